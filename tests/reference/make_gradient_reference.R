# make_gradient_reference.R -- lme4's optimum of the crossed "maximal" 4 + 4 design
#
# How to rerun (from the repository root):
#
#     /work/main/.venv/bin/python tests/reference/simulate_gradient_data.py   # the data
#     Rscript tests/reference/make_gradient_reference.R
#
# Produced with R 4.2.2, lme4 1.1.31, jsonlite 1.8.4. Fits
# y ~ a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item) to
# tests/data/crossed_maximal_gradient.csv by REML and ML with lme4's defaults, and again with
# bobyqa(rhoend = 1e-10) from lme4's optimum (the tightest lme4 gets), and writes
# logLik, theta, sigma, fixef, lme4's messages and its time to
# tests/reference/gradient_reference.json. The tests read only the JSON.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data <- read.csv("tests/data/crossed_maximal_gradient.csv")
formula <- y ~ a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)

record <- function(fit, seconds) {
  list(logLik = as.numeric(logLik(fit)), theta = unname(getME(fit, "theta")),
       sigma = sigma(fit), fixef = as.list(fixef(fit)), singular = isSingular(fit),
       messages = as.list(fit@optinfo$conv$lme4$messages), seconds = seconds)
}

cases <- list()
for (reml in c(TRUE, FALSE)) {
  seconds <- system.time(fit <- lmer(formula, data, REML = reml))[["elapsed"]]
  tight <- update(fit, start = getME(fit, "theta"),
                  control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
  id <- if (reml) "crossed_maximal_reml" else "crossed_maximal_ml"
  cases[[id]] <- list(id = id, engine = "lme4 1.1.31", formula = deparse(formula), method = if (reml) "REML" else "ML",
                      data_file = "tests/data/crossed_maximal_gradient.csv", nobs = nrow(data),
                      default = record(fit, seconds), tight_refit = record(tight, NA))
}
write_json(cases, "tests/reference/gradient_reference.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)
