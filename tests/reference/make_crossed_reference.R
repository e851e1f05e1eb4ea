# make_crossed_reference.R -- lme4 references for crossed and nested designs with slopes (issue 12)
#
# How to rerun (from the repository root):
#
#     python tests/reference/make_crossed_data.py    # the CSVs (NumPy, fixed seeds)
#     Rscript tests/reference/make_crossed_reference.R
#
# Produced with R 4.2.2 (Debian bookworm), lme4 1.1.31, Matrix 1.5-3, jsonlite 1.8.4.
#
# Cases (REML and ML each), written to tests/reference/crossed_reference.json as a dict id -> case:
#   crossed_slopes   y ~ x + (1 + x | subj) + (1 + x | item)         40 x 24, 90% of the pairs
#   crossed_maximal  y ~ a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)
#                    56 x 32 fully crossed, a singular optimum: compare log-likelihoods only
#   schools_hoods    y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)
#                    classes nested in schools, schools crossed with neighbourhoods, 2,400 rows
#
# Each case has lme4's default fit (logLik, fixef, se, sigma, theta, varcorr, singular) with every
# message and warning lme4 gave (lme4_messages; lme4_converged is FALSE when a convergence check
# failed), and "tight_refit": the same quantities from a refit with bobyqa and rhoend = 1e-10,
# since the default optimizer stops with theta good only to about 1e-5..1e-4.
# The tests never call R; they read the JSON and the CSVs.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

if (!dir.exists(file.path("tests", "reference")))
  stop("run this script from the repository root")
out_json <- file.path("tests", "reference", "crossed_reference.json")

named_list <- function(x) as.list(x)

# The quantities the tests compare, from a fitted merMod
summary_of <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  list(logLik = as.numeric(logLik(fit)),
       fixef = named_list(fixef(fit)),
       se = named_list(setNames(sqrt(diag(as.matrix(vcov(fit)))), names(fixef(fit)))),
       sigma = sigma(fit),
       theta = I(unname(getME(fit, "theta"))),
       varcorr = data.frame(grp = vc$grp, var1 = vc$var1, var2 = vc$var2,
                            vcov = vc$vcov, sdcor = vc$sdcor, stringsAsFactors = FALSE),
       singular = isSingular(fit))
}

# lmer with its warnings and messages recorded rather than printed
fit_recording <- function(formula, data, REML, control = lmerControl()) {
  msgs <- character(0)
  fit <- withCallingHandlers(
    lmer(formula, data = data, REML = REML, control = control),
    warning = function(w) {
      msgs <<- c(msgs, trimws(conditionMessage(w)))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      msgs <<- c(msgs, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    })
  conv <- fit@optinfo$conv
  failed <- c(conv$lme4$messages, unlist(fit@optinfo$warnings))
  failed <- failed[!grepl("^boundary \\(singular\\) fit", failed)]
  list(fit = fit, messages = unique(c(msgs, failed)), converged = length(failed) == 0 && conv$opt == 0)
}

lmer_case <- function(id, name, formula, REML, note) {
  data <- read.csv(file.path("tests", "data", paste0(name, ".csv")), stringsAsFactors = FALSE)
  form <- as.formula(formula)
  seconds <- system.time(default <- fit_recording(form, data, REML))[["elapsed"]]
  tight <- fit_recording(form, data, REML, lmerControl(
    optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-2, rhoend = 1e-10, maxfun = 1e5)))
  c(list(id = id, engine = paste("lme4", packageVersion("lme4")), dataset = name, formula = formula,
         method = if (REML) "REML" else "ML", nobs = nobs(default$fit),
         ngrps = named_list(ngrps(default$fit)),
         data_file = file.path("tests", "data", paste0(name, ".csv")), note = note,
         lme4_converged = default$converged, lme4_messages = I(default$messages),
         lme4_seconds = seconds),
    summary_of(default$fit),
    list(tight_refit = c(list(optimizer = "bobyqa(rhobeg = 2e-2, rhoend = 1e-10)",
                              lme4_converged = tight$converged, lme4_messages = I(tight$messages)),
                         summary_of(tight$fit))))
}

designs <- list(
  crossed_slopes = list(
    formula = "y ~ x + (1 + x | subj) + (1 + x | item)",
    note = "crossed vector-valued terms, interior optimum"),
  crossed_maximal = list(
    formula = "y ~ a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)",
    note = "maximal structure (Barr et al. 2013), singular optimum: parameters not identified"),
  schools_hoods = list(
    formula = "y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)",
    note = "classes nested in schools (unique labels), schools crossed with neighbourhoods"))

cases <- list()
for (name in names(designs)) {
  for (REML in c(TRUE, FALSE)) {
    id <- paste0(name, if (REML) "_reml" else "_ml")
    cases[[id]] <- lmer_case(id, name, designs[[name]]$formula, REML, designs[[name]]$note)
    cat(id, "logLik", format(cases[[id]]$logLik, digits = 12),
        "tight", format(cases[[id]]$tight_refit$logLik, digits = 12),
        "singular", cases[[id]]$singular, "converged", cases[[id]]$lme4_converged, "\n")
  }
}

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null", null = "null"), out_json)
cat("wrote", out_json, "\n")
