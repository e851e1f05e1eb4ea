# make_weights_reference.R -- lme4 reference values for fits with prior weights
#
# How to rerun (from the repository root):
#
#     Rscript tests/reference/make_weights_reference.R
#
# Produced with R, lme4 and lmerTest as printed into the JSON ("versions").
#
# What it does:
#   (a) reads the packaged sleepstudy and Penicillin CSVs and adds a deterministic weight
#       column, recreated identically in tests/test_weights.py:
#         sleepstudy:  w = 1 + (Days %% 3) / 2
#         Penicillin:  w = 1 + (i %% 4) / 4, i = 0, 1, ... the row number from 0;
#   (b) fits each model by REML and by ML with lmerTest::lmer(weights = w) (bobyqa with a
#       tiny final trust radius, so the optimum is accurate to ~1e-8);
#   (c) records logLik, deviance (ML) or the REML criterion, fixed effects, standard
#       errors, sigma, VarCorr sds and correlations, Satterthwaite df, the conditional
#       modes and their sds, fitted values and residuals, and for the first case the
#       profile confidence intervals;
#   and writes everything to tests/reference/weights_reference.json (id -> case).
# The tests never call R.

suppressPackageStartupMessages({
  library(lmerTest)
  library(jsonlite)
})

if (!dir.exists(file.path("tests", "reference")))
  stop("run this script from the repository root")
pkg_data <- file.path("bayeslmm", "datasets")
out_json <- file.path("tests", "reference", "weights_reference.json")

ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-2, rhoend = 1e-10, maxfun = 1e5))

sleep <- read.csv(file.path(pkg_data, "sleepstudy.csv"), stringsAsFactors = FALSE)
sleep$Subject <- factor(sleep$Subject)
sleep$w <- 1 + (sleep$Days %% 3) / 2

pen <- read.csv(file.path(pkg_data, "Penicillin.csv"), stringsAsFactors = FALSE)
pen$w <- 1 + ((seq_len(nrow(pen)) - 1) %% 4) / 4

case <- function(formula, data, reml, profile = FALSE) {
  fit <- lmer(as.formula(formula), data = data, weights = w, REML = reml, control = ctrl)
  vc <- as.data.frame(VarCorr(fit))
  coefs <- summary(fit, ddf = "Satterthwaite")$coefficients
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  list(formula = formula, REML = reml,
       logLik = as.numeric(logLik(fit)),
       criterion = if (reml) as.numeric(REMLcrit(fit)) else as.numeric(deviance(fit)),
       AIC = AIC(fit), BIC = BIC(fit),
       fixef = as.list(fixef(fit)),
       se = setNames(as.list(coefs[, "Std. Error"]), rownames(coefs)),
       df = setNames(as.list(coefs[, "df"]), rownames(coefs)),
       sigma = sigma(fit),
       varcorr = list(grp = I(vc$grp), var1 = I(vc$var1), var2 = I(vc$var2), sdcor = I(vc$sdcor)),
       ranef = list(grpvar = I(as.character(re$grpvar)), term = I(as.character(re$term)),
                    grp = I(as.character(re$grp)), condval = I(re$condval), condsd = I(re$condsd)),
       fitted = I(unname(fitted(fit))),
       residuals = I(unname(residuals(fit))),
       residuals_pearson = I(unname(residuals(fit, type = "pearson"))),
       confint_profile = if (profile) {
         ci <- confint(fit, method = "profile", oldNames = FALSE)
         list(names = I(rownames(ci)), lower = I(ci[, 1]), upper = I(ci[, 2]))
       })
}

# The same model as an unweighted one on the rows scaled by sqrt(w) (y, the intercept column and
# Days): its log-likelihood is the weighted one minus sum(log(w)) / 2, and its profile intervals
# are the weighted model's.  lme4 1.1-31's profile of a *weighted* fit gets the fixed effects'
# intervals wrong (far narrower than the Wald ones, with "bad spline fit" warnings), while
# its variance parameters agree; the fixed effects are therefore checked against these.
whitened_case <- function() {
  s <- sleep
  s$sw <- sqrt(s$w); s$y_w <- s$Reaction * s$sw; s$days_w <- s$Days * s$sw
  fit <- lmer(y_w ~ 0 + sw + days_w + (0 + sw + days_w | Subject), data = s, REML = TRUE, control = ctrl)
  ci <- confint(fit, method = "profile", oldNames = FALSE)
  list(formula = "y_w ~ 0 + sw + days_w + (0 + sw + days_w | Subject)", REML = TRUE,
       logLik = as.numeric(logLik(fit)), sum_log_w = sum(log(s$w)),
       confint_profile = list(names = I(rownames(ci)), lower = I(ci[, 1]), upper = I(ci[, 2])))
}

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest"))),
  sleep_slopes_reml = case("Reaction ~ Days + (Days | Subject)", sleep, TRUE, profile = TRUE),
  sleep_slopes_ml = case("Reaction ~ Days + (Days | Subject)", sleep, FALSE),
  sleep_slopes_reml_whitened = whitened_case(),
  sleep_intercept_ml = case("Reaction ~ Days + (1 | Subject)", sleep, FALSE),
  penicillin_reml = case("diameter ~ 1 + (1 | plate) + (1 | sample)", pen, TRUE),
  penicillin_ml = case("diameter ~ 1 + (1 | plate) + (1 | sample)", pen, FALSE)
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null", na = "null"), out_json)
cat("wrote", out_json, "\n")
