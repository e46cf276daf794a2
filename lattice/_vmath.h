/* exp and log for the lattice kernels, written so that gcc vectorises them.
 *
 * Design: the log-semiring kernels spend most of their time in exp and log. libm's
 * versions are scalar calls the compiler cannot vectorise without -ffast-math (which
 * the engine must never use: it relies on IEEE infinities). These are branch-free
 * polynomial versions (Cephes-style range reduction) made only of +, -, *, /,
 * comparisons, selects and integer bit operations, so a loop calling them
 * vectorises with SSE2, AVX2 or AVX-512, and the scalar and vector code compute the
 * same IEEE operations and therefore the same bits (the build uses
 * -ffp-contract=off so no fused multiply-add changes rounding in one of them).
 *
 * Contract (both precisions):
 *   lt_exp(-inf) = 0, lt_exp(NaN) = NaN, lt_exp(0) = 1 exactly, results below the
 *   smallest normal flush to 0 (never a denormal), large arguments give +inf;
 *   lt_log(0) = -inf, lt_log(+inf) = +inf, lt_log(x < 0) = NaN, lt_log(NaN) = NaN.
 *   Relative error: a few ulp (tested against numpy in tests/test_vmath.py).
 */
#ifndef LATTICE_VMATH_H
#define LATTICE_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float lt_bits_to_f32(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t lt_f32_to_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }
static inline double lt_bits_to_f64(int64_t i) { double d; memcpy(&d, &i, 8); return d; }
static inline int64_t lt_f64_to_bits(double d) { int64_t i; memcpy(&i, &d, 8); return i; }

/* ---------------------------------------------------------------- float32 */

static inline float lt_expf(float x)
{
    /* exp(x) = 2^k * exp(r), k = round(x / ln 2), |r| <= ln2 / 2 */
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    float res = p * lt_bits_to_f32(((int32_t)k + 127) << 23);
    res = x < -87.0f ? 0.0f : res;
    res = x > 88.0f ? INFINITY : res;
    res = x != x ? x : res;
    return res;
}

static inline float lt_logf(float x)
{
    /* x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log x = e ln2 + log1p(m - 1) */
    int32_t bits = lt_f32_to_bits(x);
    int32_t e = ((bits >> 23) & 0xff) - 127;
    float m = lt_bits_to_f32((bits & 0x007fffff) | 0x3f800000);
    int32_t big = m > 1.41421356237f;
    m = big ? m * 0.5f : m;
    float ef = (float)(e + big);
    float f = m - 1.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y = y + -2.12194440e-4f * ef;
    y = y - 0.5f * z;
    float res = f + y;
    res = res + 0.693359375f * ef;
    /* zero and denormals (which never reach here from the kernels) -> -inf */
    res = x < 1.17549435e-38f ? -INFINITY : res;
    res = x < 0.0f ? NAN : res;
    res = x == INFINITY ? INFINITY : res;
    res = x != x ? x : res;
    return res;
}

/* ---------------------------------------------------------------- float64 */

static inline double lt_exp(double x)
{
    /* Cephes exp: x = k ln2 + r, exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)) */
    double xc = x < -708.0 ? -708.0 : x;
    xc = xc > 709.0 ? 709.0 : xc;
    double k = (xc * 1.4426950408889634073599 + 6755399441055744.0) - 6755399441055744.0;
    double r = xc - k * 6.93145751953125e-1;
    r = r - k * 1.42860682030941723212e-6;
    double rr = r * r;
    double p = 1.26177193074810590878e-4;
    p = p * rr + 3.02994407707441961300e-2;
    p = p * rr + 9.99999999999999999910e-1;
    p = p * r;
    double q = 3.00198505138664455042e-6;
    q = q * rr + 2.52448340349684104192e-3;
    q = q * rr + 2.27265548208155028766e-1;
    q = q * rr + 2.00000000000000000009e0;
    double e = 1.0 + 2.0 * (p / (q - p));
    /* 2^k from the bits of k + 2^52 + 1023 (k is an integer in [-1022, 1023]) */
    int64_t kb = lt_f64_to_bits(k + 4503599627371519.0);
    double res = e * lt_bits_to_f64(kb << 52);
    res = x < -708.0 ? 0.0 : res;
    res = x > 709.0 ? INFINITY : res;
    res = x != x ? x : res;
    return res;
}

static inline double lt_log(double x)
{
    /* Cephes log: x = m * 2^e, m in [sqrt(1/2), sqrt(2)); log(1 + f) by a rational
       approximation in f = m - 1 */
    int64_t bits = lt_f64_to_bits(x);
    /* the exponent field as a double, without an int64 -> double conversion (which
       SSE2 and AVX2 cannot vectorise): the bits of 2^52 + field, minus 2^52 + 1023 */
    double e = lt_bits_to_f64(((bits >> 52) & 0x7ff) | 0x4330000000000000LL)
               - 4503599627371519.0;
    double m = lt_bits_to_f64((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    int big = m > 1.41421356237309504880;
    m = big ? m * 0.5 : m;
    double ef = big ? e + 1.0 : e;
    double f = m - 1.0;
    double z = f * f;
    double p = 1.01875663804580931796e-4;
    p = p * f + 4.97494994976747001425e-1;
    p = p * f + 4.70579119878881725854e0;
    p = p * f + 1.44989225341610930846e1;
    p = p * f + 1.79368678507819816313e1;
    p = p * f + 7.70838733755885391666e0;
    double q = f + 1.12873587189167450590e1;
    q = q * f + 4.52279145837532221105e1;
    q = q * f + 8.29875266912776603211e1;
    q = q * f + 7.11544750618563894466e1;
    q = q * f + 2.31251620126765340583e1;
    double y = f * (z * p / q);
    y = y - ef * 2.121944400546905827679e-4;
    y = y - 0.5 * z;
    double res = f + y;
    res = res + ef * 0.693359375;
    res = x < 2.2250738585072014e-308 ? -INFINITY : res;
    res = x < 0.0 ? NAN : res;
    res = x == INFINITY ? INFINITY : res;
    res = x != x ? x : res;
    return res;
}

#endif
