# lme4_reference_timings.R -- wall-clock timings of lme4::lmer for comparison
# with bayeslmm's benchmarks.
#
# Run from the repository root:
#
#     Rscript benchmarks/lme4_reference_timings.R
#
# Needs R with lme4 (Debian: apt-get install r-base-core r-cran-lme4).
# Times only the lmer() call (system.time elapsed); the simulated data are
# already in memory.  Default lmer settings (nloptwrap optimizer, REML).

suppressPackageStartupMessages(library(lme4))

cat(sprintf("R %s, lme4 %s, Matrix %s, BLAS %s\n", getRversion(), packageVersion("lme4"),
            packageVersion("Matrix"), extSoftVersion()[["BLAS"]]))

report <- function(label, fit, tm) {
  cat(sprintf("%s\n  elapsed %.2f s (user %.2f, sys %.2f)\n", label, tm[["elapsed"]],
              tm[["user.self"]], tm[["sys.self"]]))
  cat(sprintf("  logLik %.4f, singular %s, convergence messages: %s\n",
              as.numeric(logLik(fit)), isSingular(fit),
              if (length(fit@optinfo$conv$lme4$messages)) paste(fit@optinfo$conv$lme4$messages, collapse = "; ") else "none"))
  print(VarCorr(fit), comp = c("Std.Dev.", "Variance"))
  print(fixef(fit))
  cat("\n")
}

# ---------------------------------------------------------------------------
# crossed: y ~ x + (1 | f1) + (1 | f2); 75,000 rows, 3,000 x 1,000 levels
# ---------------------------------------------------------------------------
set.seed(20240601)
n <- 75000
f1 <- sample.int(3000, n, replace = TRUE)
f2 <- sample.int(1000, n, replace = TRUE)
x <- rnorm(n)
y <- 1 + 0.5 * x + rnorm(3000, sd = 1)[f1] + rnorm(1000, sd = 0.5)[f2] + rnorm(n, sd = 1)
dc <- data.frame(y = y, x = x, f1 = factor(sprintf("a%04d", f1)),
                 f2 = factor(sprintf("b%04d", f2)))
tm <- system.time(fit <- lmer(y ~ x + (1 | f1) + (1 | f2), data = dc, REML = TRUE))
report("crossed: y ~ x + (1 | f1) + (1 | f2), n = 75,000, 3,000 x 1,000 levels (REML)", fit, tm)
rm(fit, dc); invisible(gc())

# ---------------------------------------------------------------------------
# large: y ~ x1 + x2 + (1 + x1 | g); 1,000,000 rows, 20,000 groups of 50
# true sds 1 (intercept) and 0.5 (x1), correlation 0.3, residual sd 1
# ---------------------------------------------------------------------------
set.seed(20240602)
n <- 1e6
ng <- 20000
g <- rep(seq_len(ng), each = n / ng)
S <- matrix(c(1, 0.3 * 1 * 0.5, 0.3 * 1 * 0.5, 0.25), 2)
U <- matrix(rnorm(ng * 2), ng) %*% chol(S)
x1 <- rnorm(n)
x2 <- rnorm(n)
y <- (1 + U[g, 1]) + (0.5 + U[g, 2]) * x1 - 0.3 * x2 + rnorm(n, sd = 1)
dl <- data.frame(y = y, x1 = x1, x2 = x2, g = factor(g))
rm(U, x1, x2, y, g); invisible(gc())
tm <- system.time(fit <- lmer(y ~ x1 + x2 + (1 + x1 | g), data = dl, REML = TRUE))
report("large: y ~ x1 + x2 + (1 + x1 | g), n = 1,000,000, 20,000 groups (REML)", fit, tm)
