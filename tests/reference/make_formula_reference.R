# make_formula_reference.R -- lme4 reference values for formula features of bayeslmm
#
# How to rerun (from the repository root):
#
#     Rscript tests/reference/make_formula_reference.R
#
# Produced with R 4.2.2, lme4 1.1-31, jsonlite.
#
# What it does: derives a data set from the packaged sleepstudy (an offset column and a
# three-level factor whose level order is not alphabetical), writes it to
# tests/data/formula_sleep.csv (read back before fitting, so R sees exactly what Python
# reads), fits one lmer per formula feature -- offset(), I(), poly() with predictions on new
# data, log() of the response, factor level order, sum and treatment contrasts -- and writes
# logLik, fixed effects, standard errors, sigma and theta to tests/reference/formula_reference.json.
# The tests never call R.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

if (!dir.exists(file.path("tests", "reference")))
  stop("run this script from the repository root")
out_json <- file.path("tests", "reference", "formula_reference.json")
data_file <- file.path("tests", "data", "formula_sleep.csv")

sleep <- read.csv(file.path("bayeslmm", "datasets", "sleepstudy.csv"), stringsAsFactors = FALSE)
sleep$off <- 0.5 * sleep$Days + 3
sleep$dose <- c("low", "mid", "high")[sleep$Days %% 3 + 1]
write.csv(sleep, data_file, row.names = FALSE)
sleep <- read.csv(data_file, stringsAsFactors = FALSE)
sleep$Subject <- factor(sleep$Subject)
sleep$dose <- factor(sleep$dose, levels = c("low", "mid", "high"))

ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-2, rhoend = 1e-10, maxfun = 1e5))
newdata <- data.frame(Days = c(0, 2.5, 12), Subject = factor(c("308", "309", "372"), levels = levels(sleep$Subject)))

case <- function(id, r_formula, python_formulas, reml = TRUE, predict_new = FALSE) {
  fit <- lmer(as.formula(r_formula), data = sleep, REML = reml, control = ctrl)
  out <- list(id = id, r_formula = r_formula, python_formulas = I(python_formulas), REML = reml,
              loglik = as.numeric(logLik(fit)), fixef_names = I(names(fixef(fit))),
              fixef = I(unname(fixef(fit))), se = I(unname(sqrt(diag(as.matrix(vcov(fit)))))),
              sigma = sigma(fit), theta = I(unname(getME(fit, "theta"))))
  if (predict_new) {
    out$newdata <- list(Days = I(newdata$Days), Subject = I(as.character(newdata$Subject)))
    out$predict_population <- I(unname(predict(fit, newdata, re.form = NA)))
    out$predict_conditional <- I(unname(predict(fit, newdata)))
  }
  out
}

cases <- list(
  case("offset", "Reaction ~ Days + offset(off) + (Days | Subject)",
       "Reaction ~ Days + offset(off) + (Days | Subject)", predict_new = FALSE),
  case("offset_ml", "Reaction ~ Days + offset(off) + (Days | Subject)",
       "Reaction ~ Days + offset(off) + (Days | Subject)", reml = FALSE),
  case("I_power", "Reaction ~ Days + I(Days^2) + (Days | Subject)",
       c("Reaction ~ Days + I(Days^2) + (Days | Subject)", "Reaction ~ Days + I(Days**2) + (Days | Subject)",
         "Reaction ~ Days + {Days**2} + (Days | Subject)")),
  case("poly", "Reaction ~ poly(Days, 2) + (1 | Subject)", "Reaction ~ poly(Days, 2) + (1 | Subject)",
       predict_new = TRUE),
  case("log_response", "log(Reaction) ~ Days + (Days | Subject)",
       c("log(Reaction) ~ Days + (Days | Subject)", "np.log(Reaction) ~ Days + (Days | Subject)")),
  case("level_order", "Reaction ~ dose + (1 | Subject)",
       c("Reaction ~ dose + (1 | Subject)", "Reaction ~ C(dose_text, levels=['low', 'mid', 'high']) + (1 | Subject)")),
  case("sum_contrasts", "Reaction ~ C(dose, contr.sum) + (1 | Subject)", "Reaction ~ C(dose, Sum) + (1 | Subject)"),
  case("treatment_reference", "Reaction ~ relevel(dose, ref = 'mid') + Days + (Days | Subject)",
       "Reaction ~ C(dose, Treatment('mid')) + Days + (Days | Subject)")
)
names(cases) <- vapply(cases, function(x) x$id, character(1))
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE), out_json)
cat("wrote", out_json, "\n")
