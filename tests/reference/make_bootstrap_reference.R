# make_bootstrap_reference.R -- reference values for tests/inference/test_bootstrap.py
#
# How to rerun (from the repository root):
#
#     Rscript tests/reference/make_bootstrap_reference.R
#
# Produced with R 4.2.2 (Debian bookworm), lme4 1.1-31, pbkrtest (Debian r-cran-pbkrtest),
# RLRsim 3.1-8 (Debian r-cran-rlrsim) and jsonlite.  Writes
# tests/reference/bootstrap_reference.json.  The tests never call R.
#
# What it records:
#   rlrt:      RLRsim::exactRLRT for three tests (statistic, p-value from nsim = 10000 with
#              seed = 1, quantiles of the simulated null sample, its mass at 0, and the
#              eigenvalues mu computed exactly as RLRsim:::RLRTSim does (squared singular values
#              of t(qr.resid(qr(X), Z)), scaled to max 1)).  Simulated values differ from ours by
#              Monte-Carlo error only (different random numbers).
#   bootmer:   confint(method = "boot", boot.type = "perc", nsim = 1000) of the sleepstudy
#              random-slope REML fit, and the sd of every bootstrap column.
#   pbmodcomp: pbkrtest::PBmodcomp of a fixed effect (Sitka, treat), nsim = 1000.

suppressPackageStartupMessages({
  library(lme4)
  library(RLRsim)
  library(pbkrtest)
  library(jsonlite)
})

if (!dir.exists(file.path("tests", "reference"))) stop("run this script from the repository root")
out_json <- file.path("tests", "reference", "bootstrap_reference.json")
probs <- c(0.5, 0.75, 0.9, 0.95, 0.99)

sleepstudy <- lme4::sleepstudy
dyestuff <- lme4::Dyestuff
sitka <- read.csv(file.path("bayeslmm", "datasets", "Sitka.csv"))
sitka$tree <- factor(sitka$tree)

rlrsim_mu <- function(m) {
  X <- getME(m, "X")
  Z <- t(as.matrix(getME(m, "Zt")))
  mu <- (svd(t(qr.resid(qr(X), Z)), nu = 0, nv = 0)$d)^2
  mu / max(mu)
}

rlrt_case <- function(formula, m, test) {
  list(formula = formula, statistic = unname(test$statistic), p_value = test$p.value,
       nsim = length(test$sample), quantile_probs = probs,
       quantiles = unname(quantile(test$sample, probs)), mass_at_zero = mean(test$sample == 0),
       mu = rlrsim_mu(m))
}

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            RLRsim = as.character(packageVersion("RLRsim")),
                            pbkrtest = as.character(packageVersion("pbkrtest"))))

# --- exactRLRT ---------------------------------------------------------------------------
m_int <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
out$rlrt$sleepstudy_intercept <- rlrt_case("Reaction ~ Days + (1 | Subject)", m_int,
                                           exactRLRT(m_int, nsim = 10000, seed = 1))

m_dye <- lmer(Yield ~ 1 + (1 | Batch), dyestuff)
out$rlrt$dyestuff <- rlrt_case("Yield ~ 1 + (1 | Batch)", m_dye, exactRLRT(m_dye, nsim = 10000, seed = 1))

mA <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy)
m0 <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
m_slope <- lmer(Reaction ~ Days + (0 + Days | Subject), sleepstudy)
case <- rlrt_case("Reaction ~ Days + (0 + Days | Subject)", m_slope,
                  exactRLRT(m_slope, mA, m0, nsim = 10000, seed = 1))
case$mA <- "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"
case$m0 <- "Reaction ~ Days + (1 | Subject)"
out$rlrt$sleepstudy_slope_given_intercept <- case

# --- bootMer percentile intervals ------------------------------------------------------------
fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
set.seed(1)
boot <- bootMer(fm, function(x) {
  vc <- as.data.frame(VarCorr(x), order = "lower.tri")
  c(vc$sdcor, fixef(x))
}, nsim = 1000, seed = 1)
names_boot <- c("sd_(Intercept)|Subject", "cor_Days.(Intercept)|Subject", "sd_Days|Subject", "sigma",
                "(Intercept)", "Days")
ci <- t(apply(boot$t, 2, quantile, probs = c(0.025, 0.975), type = 7, na.rm = TRUE))
out$bootmer <- list(formula = "Reaction ~ Days + (Days | Subject)", nsim = nrow(boot$t), names = names_boot,
                    lower = unname(ci[, 1]), upper = unname(ci[, 2]), sd = unname(apply(boot$t, 2, sd)),
                    estimate = unname(boot$t0),
                    failures = sum(!is.na(attr(boot, "boot.fail.msgs"))))

# --- PBmodcomp -------------------------------------------------------------------------------
large <- lmer(size ~ time + treat + (1 | tree), sitka, REML = FALSE)
small <- lmer(size ~ time + (1 | tree), sitka, REML = FALSE)
pb <- PBmodcomp(large, small, nsim = 1000, seed = 1)
out$pbmodcomp <- list(large = "size ~ time + treat + (1 | tree)", small = "size ~ time + (1 | tree)",
                      method = "ML", nsim = 1000, lrt = pb$test["LRT", "stat"], df = pb$test["LRT", "df"],
                      p_chisq = pb$test["LRT", "p.value"], p_bootstrap = pb$test["PBtest", "p.value"])

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), out_json)
cat("wrote", out_json, "\n")
