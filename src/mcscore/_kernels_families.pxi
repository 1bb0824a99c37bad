# Included by _kernels.pyx: the family table (one fill function per family
# code), the draw of a chunk and of a block.  A new family adds its fill
# function and its registration here (docs/design.md, "Adding a family").

# ---------------------------------------------------------------------------
# The family table: one fill function (and optionally a score kernel) per
# family code.  A fill draws m samples of unit j into its columns of a chunk
# (see mc_fill_fn in _kernels.pxd); its parameters are the unit's block
# p = mc_unit_params(dist, j) (dist.prm_len doubles, laid out by the
# family's _draw_params in mcscore.distributions).
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    /* Column fills (mc_column_fill_fn, see _kernels.pxd) of the families
       whose draw is one call of a NumPy sampler: m draws of one unit into
       col from the unit's parameter block p. */
    #define MC_COLUMN_FILL(NAME, EXPR)                                        \
        static void NAME(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) { \
            Py_ssize_t i;                                                     \
            for (i = 0; i < m; i++) col[i] = (EXPR);                          \
        }
    /* Beta: p = [concentration1, concentration0] */
    /* NegativeBinomial: p = [probs, total_count]; successes (prob p[0])
       before total_count failures == numpy's failures before total_count
       successes with success probability 1 - p[0] */
    /* Laplace: p = [loc, scale]; NumPy's random_laplace inverts one
       uniform u per draw (u = 0 rejected: the next one): loc - scale
       log(2 - u - u) for u >= 1/2, else loc + scale log(u + u) */
    static void mc_fill_laplace(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double loc = p[0], scale = p[1];
        double u, v, s;
        int hi;
        mc_rng_t r;
        mc_rng_begin(&r, bg);
        /* the uniforms first, then the logs: a loop of independent log
           calls, off the generator's chain of states */
        mc_rng_nonzero_doubles(&r, m, col);
        mc_rng_end(&r);
        for (i = 0; i < m; i++) {
            /* the two halves by selects, not a branch (its direction is a
               coin toss): loc - scale l == loc + (-scale) l exactly */
            u = col[i];
            hi = u >= 0.5;
            v = hi ? 2.0 - u - u : u + u;
            s = hi ? -scale : scale;
            col[i] = loc + s * log(v);
        }
    }
    /* Uniform: p = [low, high]; low + (high - low) u, one uniform per draw */
    static void mc_fill_uniform(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        mc_std_uniform_fill(bg, m, col);
        for (i = 0; i < m; i++) col[i] = p[0] + (p[1] - p[0]) * col[i];
    }
    /* VonMises: p = [loc, concentration]; NumPy's Best-Fisher rejection
       sampler (a uniform angle below concentration 1e-8, a wrapped normal
       above 1e6), its result in [-pi, pi] mapped onto [-pi, pi) */
    #define MC_PI 3.141592653589793238462643383279502884
    static double mc_von_mises_draw(bitgen_t *bg, double loc, double kappa) {
        double r = random_vonmises(bg, loc, kappa);
        if (r >= MC_PI) r -= 2.0 * MC_PI;
        if (r < -MC_PI) r += 2.0 * MC_PI;
        return r;
    }
    MC_COLUMN_FILL(mc_fill_von_mises, mc_von_mises_draw(bg, p[0], p[1]))

    /* VonMises drawn by the inline sampler (mc_vm_draw, NumPy's values;
       when it is off, mc_fill_von_mises), each draw mapped onto [-pi, pi)
       as above */
    static void mc_fill_von_mises_inline(const double *p, bitgen_t *bg, Py_ssize_t m,
                                         double *col) {
        Py_ssize_t i;
        double x, w = 0.0;
        mc_vm_t v;
        mc_rng_t r;
        if (!mc_inline_vonmises) {
            mc_fill_von_mises(p, bg, m, col);
            return;
        }
        mc_vm_init(&v, p[0], p[1]);
        mc_rng_begin(&r, bg);
        for (i = 0; i < m; i++) {
            x = mc_vm_draw(&r, &v, &w);
            if (x >= MC_PI) x -= 2.0 * MC_PI;
            if (x < -MC_PI) x += 2.0 * MC_PI;
            col[i] = x;
        }
        mc_rng_end(&r);
    }
    """
    void mc_fill_laplace(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_uniform(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_von_mises(const double *p, bitgen_t *bg, Py_ssize_t m,
                           double *col) noexcept nogil
    void mc_fill_von_mises_inline(const double *p, bitgen_t *bg, Py_ssize_t m,
                                  double *col) noexcept nogil


cdef extern from *:
    """
    /* Column fills that give NumPy's draws bit for bit (the same uniforms
       or exponentials in the same order, the same arithmetic on them) with
       the per-column work done once per column instead of once per draw,
       and the uniforms made by NumPy's fill loops. */
    static inline double mc_next_double(bitgen_t *bg) {
        return bg->next_double(bg->state);
    }

    /* Bernoulli: p = [probs]; x = (u < p) for one uniform u per draw, as
       NumPy's random() < p; compared branch-free in a second pass (an
       unpredictable branch per draw cost more than the draw). */
    static void mc_fill_bernoulli(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double pr = p[0];
        mc_std_uniform_fill(bg, m, col);
        for (i = 0; i < m; i++) col[i] = (double)(col[i] < pr);
    }

    /* NumPy's random_poisson below rate 10 (and not 0): the count of
       uniforms multiplied into a product before it falls to exp(-rate) */
    static inline int64_t mc_poisson_mult(mc_rng_t *r, double enlam) {
        int64_t x = 0;
        double prod = 1.0;
        for (;;) {
            prod *= mc_rng_double(r);
            if (!(prod > enlam)) return x;
            x += 1;
        }
    }

    /* NumPy's random_poisson: inline at every rate when the inline
       sampler is in use (mc_poisson_any); else below rate 10 (not 0)
       mc_poisson_mult, 0 at rate 0, above NumPy's function drawing from bg */
    static inline int64_t mc_poisson_draw(mc_rng_t *r, double lam) {
        int64_t x;
        if (mc_inline_poisson) return mc_poisson_any(r, lam);
        if (lam < 10 && lam != 0) return mc_poisson_mult(r, exp(-lam));
        mc_rng_end(r);
        x = random_poisson(r->bg, lam);
        mc_rng_resume(r);
        return x;
    }

    /* Poisson: p = [rate]; exp(-rate) once per column below rate 10, the
       PTRS constants once per column above */
    static void mc_fill_poisson(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double lam = p[0];
        double enlam;
        mc_rng_t r;
        mc_ptrs_t t;
        if (lam >= 10 && mc_inline_poisson) {   /* PTRS inline, its constants once */
            mc_ptrs_init(&t, lam, 1);
            mc_rng_begin(&r, bg);
            for (i = 0; i < m; i++) col[i] = (double)mc_ptrs_draw(&r, &t);
            mc_rng_end(&r);
            return;
        }
        if (lam >= 10 || lam == 0) {
            for (i = 0; i < m; i++) col[i] = (double)random_poisson(bg, lam);
            return;
        }
        enlam = exp(-lam);
        mc_rng_begin(&r, bg);
        for (i = 0; i < m; i++) col[i] = (double)mc_poisson_mult(&r, enlam);
        mc_rng_end(&r);
    }

    /* Geometric: p = [probs]; numpy counts the trials up to and including
       the first success, torch the failures before it.  NumPy's
       random_geometric: for p >= 1/3 a search on one uniform per draw, below
       the inversion ceil(-E / log1p(-p)) of one standard exponential E
       (log1p(-p) once per column here). */
    static void mc_fill_geometric(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double pr = p[0], q = 1.0 - pr;
        double u, sum, prod, z, l;
        int64_t x;
        if (pr >= 0.333333333333333333333333) {
            mc_std_uniform_fill(bg, m, col);
            for (i = 0; i < m; i++) {
                u = col[i];
                x = 1;
                sum = prod = pr;
                while (u > sum) {
                    prod *= q;
                    sum += prod;
                    x++;
                }
                col[i] = (double)(x - 1);
            }
            return;
        }
        l = log1p(-pr);
        mc_std_exponential_fill(bg, m, col);
        for (i = 0; i < m; i++) {
            z = ceil(-col[i] / l);
            x = z >= 9.223372036854776e+18 ? INT64_MAX : (int64_t)z;
            col[i] = (double)(x - 1);
        }
    }

    /* Binomial(n, p) as NumPy's random_binomial draws it, bit for bit.
       Where NumPy inverts (min(p, 1 - p) * n <= 30) the probabilities it
       walks are tabulated once (the same products and quotients, in the
       same order) instead of recomputed, with a division, at every step of
       every draw; elsewhere (tab == NULL) NumPy's own function. */
    #define MC_BINOM_TABLE 128
    typedef struct { double *tab; int64_t n, bound; int flip; } mc_binom_t;

    /* t->tab must hold MC_BINOM_TABLE doubles (or be NULL: no table) */
    static void mc_binom_init(mc_binom_t *t, double p, int64_t n) {
        double pp, q, npq;
        int64_t k;
        t->n = n;
        t->bound = 0;
        t->flip = !(p <= 0.5);
        if (n == 0 || p == 0.0f) {          /* NumPy: 0 */
            if (t->tab != NULL) t->tab[0] = INFINITY;
            return;
        }
        pp = t->flip ? 1.0 - p : p;
        q = 1.0 - pp;
        npq = n * pp;
        if (t->tab == NULL || !(npq <= 30.0)) {
            t->tab = NULL;
            return;
        }
        t->bound = (int64_t)fmin((double)n, npq + 10.0 * sqrt(npq * q + 1));
        if (t->bound >= MC_BINOM_TABLE) {
            t->tab = NULL;
            return;
        }
        t->tab[0] = exp(n * log(q));
        for (k = 1; k <= t->bound; k++)
            t->tab[k] = ((n - k + 1) * pp * t->tab[k - 1]) / (k * q);
    }

    static inline int64_t mc_binom_draw(bitgen_t *bg, const mc_binom_t *t, double p,
                                        binomial_t *b) {
        int64_t x = 0;
        double u;
        if (t->tab == NULL) return random_binomial(bg, p, t->n, b);
        if (t->n == 0 || p == 0.0f) return 0;
        u = mc_next_double(bg);
        while (u > t->tab[x]) {
            if (x + 1 > t->bound) {
                x = 0;
                u = mc_next_double(bg);
                continue;
            }
            u -= t->tab[x];
            x++;
        }
        return t->flip ? t->n - x : x;
    }

    static void mc_binomial_column(bitgen_t *bg, double p, int64_t n, Py_ssize_t m,
                                   double *col, binomial_t *b) {
        Py_ssize_t i;
        double tab[MC_BINOM_TABLE];
        mc_binom_t t;
        t.tab = tab;
        mc_binom_init(&t, p, n);
        for (i = 0; i < m; i++) col[i] = (double)mc_binom_draw(bg, &t, p, b);
    }

    /* Multinomial(n, p) draws of one unit (K categories) into x[k * ld + i]
       as NumPy's random_multinomial makes them, bit for bit: category j
       takes Binomial(left, p_j / (1 - p_0 - ... - p_{j-1})) of the trials
       left, until none is left.  For n <= MC_MULTI_MAX_N the binomials'
       tables are built for each (category, trials left) when first needed
       (one chunk of draws needs few of them).  Returns -1 when out of
       memory. */
    #define MC_MULTI_MAX_N 64
    static void mc_multinomial_unit(bitgen_t *bg, int64_t n, const double *pix, Py_ssize_t K,
                                    Py_ssize_t m, double *x, Py_ssize_t ld, int64_t *ibuf,
                                    binomial_t *b) {
        Py_ssize_t i, j, k;
        double rem = 1.0, *pj = NULL, *tabs = NULL;
        mc_binom_t *ts = NULL, *t;
        int64_t dn, v;
        if (n >= 0 && n <= MC_MULTI_MAX_N && K >= 2) {
            pj = (double *)malloc(sizeof(double) * K);
            ts = (mc_binom_t *)calloc((size_t)(K - 1) * (n + 1), sizeof(mc_binom_t));
            tabs = (double *)malloc(sizeof(double) * (size_t)(K - 1) * (n + 1) * (n + 1));
        }
        if (pj == NULL || ts == NULL || tabs == NULL) {  /* NumPy's loop as it is */
            free(pj); free(ts); free(tabs);
            for (i = 0; i < m; i++) {
                memset(ibuf, 0, sizeof(int64_t) * K);
                random_multinomial(bg, n, ibuf, (double *)pix, K, b);
                for (k = 0; k < K; k++) x[k * ld + i] = (double)ibuf[k];
            }
            return;
        }
        for (j = 0; j < K - 1; j++) {   /* the conditional probabilities, as NumPy's loop */
            pj[j] = pix[j] / rem;
            rem -= pix[j];
        }
        for (i = 0; i < m; i++) {
            for (k = 0; k < K; k++) x[k * ld + i] = 0.0;
            dn = n;
            for (j = 0; j < K - 1; j++) {
                t = &ts[j * (n + 1) + dn];
                if (t->n != dn || (t->tab == NULL && t->bound != -1)) {
                    /* first use: a table of bound + 1 <= dn + 1 <= n + 1 values */
                    t->tab = tabs + (j * (n + 1) + dn) * (n + 1);
                    mc_binom_init(t, pj[j], dn);
                    if (t->tab == NULL) t->bound = -1;  /* set up: NumPy's own draw */
                }
                v = mc_binom_draw(bg, t, pj[j], b);
                x[j * ld + i] = (double)v;
                dn -= v;
                if (dn <= 0) break;
            }
            if (dn > 0) x[(K - 1) * ld + i] = (double)dn;
        }
        free(pj); free(ts); free(tabs);
    }

    /* Gamma: p = [concentration, rate] */
    static void mc_fill_gamma(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double scale = 1.0 / p[1];
        mc_gamma_t g;
        mc_rng_t r;
        mc_gamma_init(&g, p[0]);
        mc_rng_begin(&r, bg);
        for (i = 0; i < m; i++) col[i] = mc_gamma_draw(&r, &g) * scale;
        mc_rng_end(&r);
    }

    /* NumPy's random_beta when both concentrations are <= 1 (Johnk's
       method): tries of two uniforms u, v, with x = u^(1/a), y = v^(1/b),
       until x + y <= 1 (and not u = v = 0); x / (x + y), or when a power
       underflowed to 0 the same ratio from the logarithms: with
       lx = log u / a, ly = log v / b less their maximum (one of them 0),
       exp(lx - log1p(exp(min(lx, ly)))) */
    static inline double mc_beta_johnk(mc_rng_t *r, double a, double b) {
        double u, v, x, y, s, lx, ly, lm;
        for (;;) {
            u = mc_rng_double(r);
            v = mc_rng_double(r);
            x = pow(u, 1.0 / a);
            y = pow(v, 1.0 / b);
            s = x + y;
            if (s <= 1.0 && u + v > 0.0) break;
        }
        if (x > 0 && y > 0) return x / s;
        lx = log(u) / a;
        ly = log(v) / b;
        lm = lx > ly ? lx : ly;
        lx -= lm;
        ly -= lm;
        return exp(lx - log1p(exp(lx < ly ? lx : ly)));
    }

    /* Beta: p = [concentration1, concentration0]; NumPy's random_beta:
       Johnk's method when both are <= 1, else Ga / (Ga + Gb) of two
       gammas drawn in that order */
    static void mc_fill_beta(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        double ga, gb;
        mc_gamma_t a, b;
        mc_rng_t r;
        mc_rng_begin(&r, bg);
        if (p[0] <= 1.0 && p[1] <= 1.0) {
            for (i = 0; i < m; i++) col[i] = mc_beta_johnk(&r, p[0], p[1]);
            mc_rng_end(&r);
            return;
        }
        mc_gamma_init(&a, p[0]);
        mc_gamma_init(&b, p[1]);
        for (i = 0; i < m; i++) {
            ga = mc_gamma_draw(&r, &a);
            gb = mc_gamma_draw(&r, &b);
            col[i] = ga / (ga + gb);
        }
        mc_rng_end(&r);
    }

    /* NegativeBinomial: p = [probs, total_count]; successes (prob p[0])
       before total_count failures == NumPy's failures before total_count
       successes with success probability 1 - p[0]: NumPy's
       random_negative_binomial, a Poisson of rate scale * Gamma(total_count)
       with scale = (1 - q) / q, q = 1 - p[0] */
    static void mc_fill_negative_binomial(const double *p, bitgen_t *bg, Py_ssize_t m,
                                          double *col) {
        Py_ssize_t i;
        const double q = 1.0 - p[0], scale = (1 - q) / q;
        mc_gamma_t g;
        mc_rng_t r;
        mc_gamma_init(&g, p[1]);
        mc_rng_begin(&r, bg);
        for (i = 0; i < m; i++)
            col[i] = (double)mc_poisson_draw(&r, scale * mc_gamma_draw(&r, &g));
        mc_rng_end(&r);
    }
    /* The families drawn from standard normals, gammas or exponentials,
       bit for bit as NumPy's samplers (the same variates in the same order,
       the same arithmetic on them): the columns of standard normals come
       from mc_std_normal_fill (_kernels_inline.pxi: NumPy's fill loop's
       values and stream consumption, inline for PCG64), the exponentials
       inline (mc_std_exponential_fill), the gammas from mc_gamma_draw
       (_kernels_inline.pxi: constants once per column, variates inline),
       the rest elementwise. */

    /* HalfNormal: p = [scale]; |scale * z| of one standard normal per draw */
    static void mc_fill_half_normal(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double s = p[0];
        mc_std_normal_fill(bg, m, col);
        for (i = 0; i < m; i++) col[i] = fabs(s * col[i]);
    }

    /* Chi2: p = [df]; NumPy's random_chisquare, 2 * Gamma(df / 2, 1) */
    static void mc_fill_chi2(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        mc_gamma_t g;
        mc_rng_t r;
        mc_gamma_init(&g, p[0] / 2.0);
        mc_rng_begin(&r, bg);
        for (i = 0; i < m; i++) col[i] = 2.0 * mc_gamma_draw(&r, &g);
        mc_rng_end(&r);
    }

    /* InverseGamma: p = [concentration, rate]; rate / Gamma(concentration, 1) */
    static void mc_fill_inverse_gamma(const double *p, bitgen_t *bg, Py_ssize_t m,
                                      double *col) {
        Py_ssize_t i;
        const double rate = p[1];
        mc_gamma_t g;
        mc_rng_t r;
        mc_gamma_init(&g, p[0]);
        mc_rng_begin(&r, bg);
        for (i = 0; i < m; i++) col[i] = rate / mc_gamma_draw(&r, &g);
        mc_rng_end(&r);
    }

    /* Gumbel and Weibull keep each draw's standard exponential E in ecol
       (or not: ecol NULL), the column their scores are computed from
       (mc_exp_column_score): exp(-(x - loc) / scale) = E, (x / scale)^k = E.

       Gumbel: p = [loc, scale]; NumPy's random_gumbel, bit for bit:
       U = 1 - u of one uniform u per draw (u = 0 rejected: the next one),
       E = -log(U), x = loc - scale log(E). */
    static void mc_gumbel_column(const double *p, bitgen_t *bg, Py_ssize_t m, double *col,
                                 double *ecol) {
        Py_ssize_t i;
        const double loc = p[0], scale = p[1];
        double e;
        mc_rng_t r;
        mc_rng_begin(&r, bg);
        /* the uniforms first, then the logs: a loop of independent log
           calls, off the generator's chain of states */
        /* U = 1 - u < 1 exactly when u != 0 */
        mc_rng_nonzero_doubles(&r, m, col);
        mc_rng_end(&r);
        for (i = 0; i < m; i++) {
            e = -log(1.0 - col[i]);
            col[i] = loc - scale * log(e);
            if (ecol != NULL) ecol[i] = e;
        }
    }

    /* Weibull: p = [scale, concentration]; scale * NumPy's random_weibull,
       pow(E, 1 / k) of one standard exponential E from NumPy's fill loop
       (0, drawing nothing, at k = 0; E is 0 then) */
    static void mc_weibull_column(const double *p, bitgen_t *bg, Py_ssize_t m, double *col,
                                  double *ecol) {
        Py_ssize_t i;
        const double lam = p[0], k = p[1], ik = 1. / k;
        double *e = ecol != NULL ? ecol : col;
        if (k == 0.0) {
            for (i = 0; i < m; i++) col[i] = lam * 0.0;
            if (ecol != NULL) memset(ecol, 0, sizeof(double) * m);
            return;
        }
        mc_std_exponential_fill(bg, m, e);
        for (i = 0; i < m; i++) col[i] = lam * pow(e[i], ik);
    }

    /* StudentT: p = [df, loc, scale]; NumPy's random_standard_t, a normal
       num then a Gamma(df / 2) denom, sqrt(df / 2) num / sqrt(denom) */
    static void mc_fill_student_t(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        Py_ssize_t i;
        const double df = p[0], loc = p[1], s = p[2], r = sqrt(df / 2);
        double num, denom;
        mc_gamma_t g;
        mc_rng_t st;
        mc_gamma_init(&g, df / 2);
        mc_rng_begin(&st, bg);
        for (i = 0; i < m; i++) {
            num = mc_rng_normal(&st);
            denom = mc_gamma_draw(&st, &g);
            col[i] = loc + s * (r * num / sqrt(denom));
        }
        mc_rng_end(&st);
    }

    /* Cauchy and HalfCauchy: NumPy's random_standard_cauchy, the ratio
       z0 / z1 of two standard normals drawn in that order: pairs of
       normals made by the standard normal fill, MC_CAUCHY_BLOCK at a time */
    #define MC_CAUCHY_BLOCK 256
    static void mc_standard_cauchy_fill(bitgen_t *bg, Py_ssize_t m, double *col, double loc,
                                        double s, int half) {
        double z[2 * MC_CAUCHY_BLOCK];
        Py_ssize_t i0, i, b;
        for (i0 = 0; i0 < m; i0 += MC_CAUCHY_BLOCK) {
            b = m - i0 < MC_CAUCHY_BLOCK ? m - i0 : MC_CAUCHY_BLOCK;
            mc_std_normal_fill(bg, 2 * b, z);
            if (half)
                for (i = 0; i < b; i++) col[i0 + i] = fabs(s * (z[2 * i] / z[2 * i + 1]));
            else
                for (i = 0; i < b; i++) col[i0 + i] = loc + s * (z[2 * i] / z[2 * i + 1]);
        }
    }

    /* Cauchy: p = [loc, scale]; loc + scale c */
    static void mc_fill_cauchy(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        mc_standard_cauchy_fill(bg, m, col, p[0], p[1], 0);
    }

    /* HalfCauchy: p = [scale]; |scale c| */
    static void mc_fill_half_cauchy(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) {
        mc_standard_cauchy_fill(bg, m, col, 0.0, p[0], 1);
    }
    """
    void mc_fill_half_normal(const double *p, bitgen_t *bg, Py_ssize_t m,
                             double *col) noexcept nogil
    void mc_fill_chi2(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_inverse_gamma(const double *p, bitgen_t *bg, Py_ssize_t m,
                               double *col) noexcept nogil
    void mc_gumbel_column(const double *p, bitgen_t *bg, Py_ssize_t m, double *col,
                          double *ecol) noexcept nogil
    void mc_weibull_column(const double *p, bitgen_t *bg, Py_ssize_t m, double *col,
                           double *ecol) noexcept nogil
    void mc_fill_student_t(const double *p, bitgen_t *bg, Py_ssize_t m,
                           double *col) noexcept nogil
    void mc_fill_cauchy(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_half_cauchy(const double *p, bitgen_t *bg, Py_ssize_t m,
                             double *col) noexcept nogil
    void mc_fill_gamma(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_beta(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_negative_binomial(const double *p, bitgen_t *bg, Py_ssize_t m,
                                   double *col) noexcept nogil
    void mc_binomial_column(bitgen_t *bg, double p, int64_t n, Py_ssize_t m, double *col,
                            binomial_t *b) noexcept nogil
    void mc_multinomial_unit(bitgen_t *bg, int64_t n, const double *pix, Py_ssize_t K,
                             Py_ssize_t m, double *x, Py_ssize_t ld, int64_t *ibuf,
                             binomial_t *b) noexcept nogil
    void mc_fill_bernoulli(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_poisson(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_geometric(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil


cdef mc_family _FAMILY_TABLE[MC_N_FAMILIES]
# the families whose kept column (lt) is each draw's standard exponential E
cdef bint _EXP_COLUMN[MC_N_FAMILIES]


cdef inline const double *mc_unit_params(const mc_dist *dist, Py_ssize_t j) noexcept nogil:
    return dist.prm + j * dist.prm_len


cdef const mc_family *mc_family_of(int family) noexcept nogil:
    """The family's kernel functions, or NULL for an unknown code."""
    if family < 0 or family >= MC_N_FAMILIES or (_FAMILY_TABLE[family].fill == NULL and
                                                 _FAMILY_TABLE[family].fill_column == NULL):
        return NULL
    return &_FAMILY_TABLE[family]


cdef void _register(int code, const char *name, mc_fill_fn fill, bint log_column=False,
                    mc_score_fn score=NULL) noexcept:
    """Enter a family in the table: its general fill, whether the fill
    writes log columns, and its own score kernel (or NULL)."""
    _FAMILY_TABLE[code].name = name
    _FAMILY_TABLE[code].fill = fill
    _FAMILY_TABLE[code].score = score
    _FAMILY_TABLE[code].log_column = log_column


cdef void _register_column(int code, const char *name, mc_column_fill_fn fill_column,
                           mc_score_fn score=NULL) noexcept:
    """Enter a univariate family drawn by a column fill."""
    _register(code, name, NULL, False, score)
    _FAMILY_TABLE[code].fill_column = fill_column


memset(_FAMILY_TABLE, 0, sizeof(_FAMILY_TABLE))
memset(_EXP_COLUMN, 0, sizeof(_EXP_COLUMN))


cdef void _fill_normal(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil:
    # p = [loc, scale]
    random_standard_normal_fill(bg, m, col)
    mc_c_affine(col, m, p[0], p[1])



cdef void _fill_lognormal(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                          double *xt, Py_ssize_t ld, double *lt,
                          mc_workspace *ws) noexcept nogil:
    # p = [loc, scale] of log x; lt (or NULL) receives log x exactly as drawn
    cdef const double *p = mc_unit_params(dist, j)
    cdef double *col = xt + j * ld
    cdef double *lcol
    cdef double a = p[0], b = p[1]
    cdef Py_ssize_t i, k
    mc_std_normal_fill(bg, m, col)
    if lt == NULL:
        mc_c_affine(col, m, a, b)
        mc_vexp(col, col, m)
        return
    lcol = lt + j * ld
    for i in range(m):
        lcol[i] = a + b * col[i]
    if ws.lazy_thr != NULL and ws.lazy_thr[j] > -INFINITY:
        # fused kernels whose f reads x only through calls and digital
        # calls: below the strike x is never looked at (ws.tmp and ws.fx
        # are free while drawing)
        k = mc_c_gather_above(lcol, col, m, ws.lazy_thr[j], <Py_ssize_t *> ws.tmp, ws.fx)
        mc_vexp(ws.fx, ws.fx, k)
        mc_c_scatter(ws.fx, k, <Py_ssize_t *> ws.tmp, col)
    else:
        mc_vexp(lcol, col, m)



cdef void _fill_exponential(const double *p, bitgen_t *bg, Py_ssize_t m,
                            double *col) noexcept nogil:
    # p = [rate]
    cdef double scale = 1.0 / p[0]
    cdef Py_ssize_t i
    mc_std_exponential_fill(bg, m, col)
    for i in range(m):
        col[i] = col[i] * scale



cdef void _fill_gumbel(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                       double *xt, Py_ssize_t ld, double *lt, mc_workspace *ws) noexcept nogil:
    # p = [loc, scale]; lt (or NULL) receives each draw's standard exponential
    mc_gumbel_column(mc_unit_params(dist, j), bg, m, xt + j * ld,
                     (lt + j * ld) if lt != NULL else NULL)


cdef void _fill_weibull(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                        double *xt, Py_ssize_t ld, double *lt, mc_workspace *ws) noexcept nogil:
    # p = [scale, concentration]; lt (or NULL) as in _fill_gumbel
    mc_weibull_column(mc_unit_params(dist, j), bg, m, xt + j * ld,
                      (lt + j * ld) if lt != NULL else NULL)



cdef void _fill_binomial(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                         double *xt, Py_ssize_t ld, double *lt,
                         mc_workspace *ws) noexcept nogil:
    # p = [probs, total_count]; ws.binom caches NumPy's per-parameter setup
    cdef const double *p = mc_unit_params(dist, j)
    mc_binomial_column(bg, p[0], <int64_t> p[1], m, xt + j * ld, &ws.binom)



cdef void _fill_categorical(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                            double *xt, Py_ssize_t ld, double *lt,
                            mc_workspace *ws) noexcept nogil:
    # the unit's alias table (dist.alias_q / alias_i); one uniform per draw
    cdef Py_ssize_t K = dist.n_cat
    cdef double *col = xt + j * ld
    mc_std_uniform_fill(bg, m, col)
    mc_c_alias(col, m, K, dist.alias_q + j * K, dist.alias_i + j * K)



cdef void _fill_multinomial(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                            double *xt, Py_ssize_t ld, double *lt,
                            mc_workspace *ws) noexcept nogil:
    # p = [probs (K), total_count]; columns j*K .. j*K+K-1
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t K = dist.n_cat
    mc_multinomial_unit(bg, <int64_t> p[K], p, K, m, xt + j * K * ld, ld, ws.ibuf, &ws.binom)



# the Dirichlet fill keeps the gamma constants of up to this many
# concentrations (the later ones' are computed per draw, as NumPy does)
cdef enum:
    MC_DIRICHLET_SHAPES = 16


cdef void _fill_dirichlet(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                          double *xt, Py_ssize_t ld, double *lt,
                          mc_workspace *ws) noexcept nogil:
    # p = [concentration (K), unused]; columns j*K .. j*K+K-1
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t i, k, K = dist.n_cat
    cdef double a, b, u = 0.0, scale, v
    cdef double *x = xt + j * K * ld
    cdef mc_rng_t r
    cdef mc_gamma_t g[MC_DIRICHLET_SHAPES]    # the first shapes' constants
    cdef mc_gamma_t gk                        # and those of a later one
    for k in range(K):
        u = u + p[k]
        if k < MC_DIRICHLET_SHAPES:
            mc_gamma_init(&g[k], p[k])
    mc_rng_begin(&r, bg)
    for i in range(m):
        a = 0.0
        for k in range(K):
            if k >= MC_DIRICHLET_SHAPES:
                mc_gamma_init(&gk, p[k])
                scale = mc_gamma_draw(&r, &gk)
            else:
                scale = mc_gamma_draw(&r, &g[k])
            x[k * ld + i] = scale
            a = a + scale
        if a > 0.0:
            for k in range(K):
                x[k * ld + i] = x[k * ld + i] / a
            continue
        # Every gamma variate underflowed (tiny concentrations): break the
        # stick with beta draws instead, as NumPy does for small
        # concentrations, so the draw is a point of the simplex.
        mc_rng_end(&r)                   # NumPy's beta draws from bg
        b = u           # concentration left after category k
        scale = 1.0     # length of stick left
        for k in range(K - 1):
            b = b - p[k]
            if b < p[K - 1]:
                b = p[K - 1]
            v = random_beta(bg, p[k], b)
            x[k * ld + i] = scale * v
            scale = scale * (1.0 - v)
        x[(K - 1) * ld + i] = scale
        mc_rng_resume(&r)
    mc_rng_end(&r)



cdef void _fill_one_hot_categorical(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg,
                                    Py_ssize_t m, double *xt, Py_ssize_t ld, double *lt,
                                    mc_workspace *ws) noexcept nogil:
    # p = [probs (K, normalised), unused]; columns j*K .. j*K+K-1 receive a
    # one-hot vector per draw: the category is found by inverting the CDF at
    # one uniform u (categories of probability 0 are never chosen), the
    # first k < last with u < c_k = p_0 + ... + p_k (summed in that order),
    # else last.  The c_k never decrease, so that k is the count of the
    # k < last with u >= c_k: counted without branches, one category at a
    # time over the column of draws.
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t i, k, last = 0, K = dist.n_cat
    cdef double *x = xt + j * K * ld
    cdef double *u = x + (K - 1) * ld
    cdef double *cnt = x
    cdef double c
    for k in range(K):
        if p[k] > 0.0:
            last = k
    # one uniform per draw, in draw order (NumPy's fill loop's values)
    mc_std_uniform_fill(bg, m, u)
    if K == 1:
        for i in range(m):
            u[i] = 1.0
        return
    memset(cnt, 0, sizeof(double) * m)
    c = 0.0
    for k in range(last):
        c = c + p[k]
        for i in range(m):
            cnt[i] += <double> (u[i] >= c)
    for k in range(1, K - 1):
        memset(x + k * ld, 0, sizeof(double) * m)
    for i in range(m):
        k = <Py_ssize_t> cnt[i]
        cnt[i] = 0.0
        u[i] = 0.0
        x[k * ld + i] = 1.0



# The family table.  Column fills (the simple form, mc_column_fill_fn):
_register_column(MC_NORMAL, b"Normal", _fill_normal)
_register_column(MC_EXPONENTIAL, b"Exponential", _fill_exponential)
_register_column(MC_GAMMA, b"Gamma", mc_fill_gamma)
_register_column(MC_BETA, b"Beta", mc_fill_beta)
_register_column(MC_POISSON, b"Poisson", mc_fill_poisson)
_register_column(MC_BERNOULLI, b"Bernoulli", mc_fill_bernoulli)
_register_column(MC_GEOMETRIC, b"Geometric", mc_fill_geometric)
_register_column(MC_NEGATIVE_BINOMIAL, b"NegativeBinomial", mc_fill_negative_binomial)
_register_column(MC_LAPLACE, b"Laplace", mc_fill_laplace)
_register_column(MC_HALF_NORMAL, b"HalfNormal", mc_fill_half_normal)
_register_column(MC_CHI2, b"Chi2", mc_fill_chi2)
_register_column(MC_INVERSE_GAMMA, b"InverseGamma", mc_fill_inverse_gamma)
_register_column(MC_UNIFORM, b"Uniform", mc_fill_uniform)
_register_column(MC_STUDENT_T, b"StudentT", mc_fill_student_t)
_register_column(MC_CAUCHY, b"Cauchy", mc_fill_cauchy)
_register_column(MC_HALF_CAUCHY, b"HalfCauchy", mc_fill_half_cauchy)
_register_column(MC_VON_MISES, b"VonMises", mc_fill_von_mises_inline)
# ... and fills of the general form (mc_fill_fn: several columns per unit,
# log columns, workspace state):
_register(MC_LOGNORMAL, b"LogNormal", _fill_lognormal, True)
_register(MC_GUMBEL, b"Gumbel", _fill_gumbel, True)
_register(MC_WEIBULL, b"Weibull", _fill_weibull, True)
_EXP_COLUMN[MC_GUMBEL] = True
_EXP_COLUMN[MC_WEIBULL] = True
_register(MC_BINOMIAL, b"Binomial", _fill_binomial)
_register(MC_CATEGORICAL, b"Categorical", _fill_categorical)
_register(MC_MULTINOMIAL, b"Multinomial", _fill_multinomial)
_register(MC_DIRICHLET, b"Dirichlet", _fill_dirichlet)
_register(MC_ONE_HOT_CATEGORICAL, b"OneHotCategorical", _fill_one_hot_categorical)


cdef bint mc_has_log_column(const mc_dist *dist) noexcept nogil:
    """True when the fill keeps a column per draw column in lt (the log
    column buffer): log x for LogNormal (the score then reads it instead of
    recomputing log(exp(y))), the draw's standard exponential E for Gumbel
    and Weibull (mc_has_exp_column: their scores are computed from it)."""
    cdef const mc_family *fam = mc_family_of(dist.family)
    return fam != NULL and fam.log_column


cdef inline bint mc_has_exp_column(const mc_dist *dist) noexcept nogil:
    """True when lt holds the draws' standard exponentials, not log x: the
    table evaluator must not read it as log x (mc_accum_chunk)."""
    return 0 <= dist.family < MC_N_FAMILIES and _EXP_COLUMN[dist.family]


cdef void mc_draw_chunk(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                        Py_ssize_t ld, double *lt, mc_workspace *ws) noexcept nogil:
    """Draw m samples into xt, column-major with leading dimension ld:
    xt[c * ld + i].  Draws are made unit by unit (all m draws of unit 0, then
    unit 1, ...) by the family's fill function, so that fills write
    contiguous columns.  lt (same layout; may be NULL) receives log x for
    families with a log column (LogNormal)."""
    cdef const mc_family *fam = &_FAMILY_TABLE[dist.family]
    cdef Py_ssize_t j
    for j in range(dist.n_units):
        if fam.fill != NULL:
            fam.fill(dist, j, bg, m, xt, ld, lt, ws)
        else:
            fam.fill_column(mc_unit_params(dist, j), bg, m, xt + j * ld)


cdef bint mc_draw_block_polled(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                               double *lt, mc_workspace *ws, mc_round *rd,
                               int tid) noexcept nogil:
    """mc_draw_block_lt that polls the driver (rd, or NULL) after every chunk;
    True when it stopped early (an interrupt: the draws are then discarded)."""
    cdef Py_ssize_t i0, cs, c = mc_chunk_len(dist.draw_size)
    i0 = 0
    while i0 < m:
        cs = c if m - i0 > c else m - i0
        mc_draw_chunk(dist, bg, cs, xt + i0, m, (lt + i0) if lt != NULL else NULL, ws)
        i0 += cs
        if rd != NULL and i0 < m and mc_poll(rd, tid):
            return True
    return False


cdef void mc_draw_block_lt(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                           double *lt, mc_workspace *ws) noexcept nogil:
    """Draw a block of m samples (column-major, leading dimension m) chunk by
    chunk, exactly as the fused kernels do; lt (or NULL) as in mc_draw_chunk."""
    mc_draw_block_polled(dist, bg, m, xt, lt, ws, NULL, 0)


cdef void mc_draw_block(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                        mc_workspace *ws) noexcept nogil:
    """Draw m samples into xt (column-major, see the .pxd), in the order the
    kernels use (chunk by chunk, unit by unit within a chunk)."""
    mc_draw_block_lt(dist, bg, m, xt, NULL, ws)
