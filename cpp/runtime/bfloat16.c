/* f32 and f64 to bf16 conversions, which LLVM calls on CPUs without
 * AVX-512 BF16 (`fptrunc` to bfloat: Zen 3, Haswell, x86-64-v3). libgcc
 * has them only from GCC 13 (`libgcc_s.so.1` of Debian 12 lacks them), so
 * generated code would not link or load without these. They follow the
 * x86-64 psABI of `__bf16`: the result's bits in the low half of xmm0, as
 * for `_Float16`, which carries them here. Rounding is to nearest, ties to
 * even; a NaN stays a NaN of the same sign, made quiet. */
#include <stdint.h>
#include <string.h>

static _Float16 carrier_of(uint16_t bits) {
  _Float16 carrier;
  memcpy(&carrier, &bits, sizeof carrier);
  return carrier;
}

static uint16_t bf16_bits_of(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((bits >> 16) | 0x0040u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

__attribute__((visibility("default"))) _Float16 __truncsfbf2(float value) {
  return carrier_of(bf16_bits_of(value));
}

/* Through f32 rounded to odd (toward zero, the last bit set where inexact):
 * its 16 extra bits keep the second rounding from rounding twice. */
__attribute__((visibility("default"))) _Float16 __truncdfbf2(double value) {
  float narrowed = (float)value;
  if (value != value)
    return carrier_of(bf16_bits_of(narrowed));
  uint32_t bits;
  memcpy(&bits, &narrowed, sizeof bits);
  if ((double)narrowed != value) {
    double magnitude = value < 0 ? -value : value;
    double narrowed_magnitude = narrowed < 0 ? -(double)narrowed : (double)narrowed;
    if (narrowed_magnitude > magnitude)
      bits -= 1; /* rounded away from zero: the float below, toward zero */
    bits |= 1u;
  }
  memcpy(&narrowed, &bits, sizeof bits);
  return carrier_of(bf16_bits_of(narrowed));
}
