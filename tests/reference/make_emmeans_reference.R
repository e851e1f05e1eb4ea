# make_emmeans_reference.R -- estimated marginal means and contrasts (emmeans) for bayeslmm
#
# How to rerun (from the repository root):
#
#     Rscript tests/reference/make_emmeans_reference.R
#
# Produced with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, emmeans 1.8.4 (Debian's
# r-cran-emmeans), jsonlite.
#
# What it does:
#   (a) simulates an MMRM-like trial (subjects x four visits x two arms, a baseline covariate,
#       subject-level random intercepts, about 10% of the visits missing) and writes it to
#       tests/data/emmeans_mmrm.csv (read back before fitting, so R sees what Python reads);
#   (b) fits each model by REML with lmerTest::lmer (bobyqa with a tiny final trust radius, so
#       the optimum does not limit the comparison);
#   (c) records, per call, emmeans' table (as.data.frame of emmeans() or contrast()) with the
#       denominator-df method named (lmer.df = "satterthwaite", "kenward-roger", "asymptotic";
#       for the one nlme::gls case, an unstructured residual covariance, mode = "asymptotic"),
#       the grid settings (specs, by, at), the contrast method and p-value adjustment, and the
#       linear functions of the fixed effects behind the rows (emmeans' linfct, rows x coefficients
#       in the model matrix's column order);
#   and writes everything to tests/reference/emmeans_reference.json (id -> case).
# The tests never call R.

suppressPackageStartupMessages({
  library(lmerTest)
  library(pbkrtest)
  library(emmeans)
  library(nlme)
  library(jsonlite)
})

if (!dir.exists(file.path("tests", "reference")))
  stop("run this script from the repository root")
data_dir <- file.path("tests", "data")
out_json <- file.path("tests", "reference", "emmeans_reference.json")
pkg_data <- file.path("bayeslmm", "datasets")

ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-2, rhoend = 1e-10, maxfun = 1e5))

simulate_mmrm <- function(seed = 20261201) {
  set.seed(seed)
  n <- 60
  visits <- paste0("V", 1:4)
  subject <- rep(sprintf("S%02d", 1:n), each = 4)
  arm <- rep(rep(c("PBO", "TRT"), length.out = n), each = 4)
  visit <- rep(visits, n)
  base <- rep(round(rnorm(n, 55, 8), 1), each = 4)
  week <- rep(1:4, n)
  effect <- ifelse(arm == "TRT", 1.5 * week, 0)
  chg <- 2 + 0.8 * week + effect - 0.1 * (base - 55) + rep(rnorm(n, 0, 3), each = 4) + rnorm(4 * n, 0, 2.5)
  data <- data.frame(subject = subject, arm = arm, visit = visit, base = base, chg = round(chg, 3))
  missing <- sample(which(week > 1), 24)  # dropouts after the first visit
  data[-missing, ]
}

write_and_reload <- function(df, name) {
  path <- file.path(data_dir, paste0(name, ".csv"))
  write.csv(df, path, row.names = FALSE)
  read.csv(path, stringsAsFactors = FALSE)
}

table_list <- function(tab) {
  out <- lapply(as.list(tab), function(column) I(if (is.factor(column)) as.character(column) else column))
  out
}

# one call: emmeans (kind = "emmeans") or a contrast of them (kind = "contrast")
one_call <- function(fit, kind, specs, by = NULL, at = NULL, ddf = "kenward-roger", method = NULL,
                     adjust = NULL) {
  grid_args <- list(fit, specs = specs, by = by)
  grid_args[[if (inherits(fit, "gls")) "mode" else "lmer.df"]] <- ddf
  if (!is.null(at)) grid_args$at <- at
  emm <- do.call(emmeans, grid_args)
  if (kind == "emmeans") {
    result <- emm
  } else {
    result <- if (is.null(adjust)) contrast(emm, method = method) else contrast(emm, method = method, adjust = adjust)
  }
  list(kind = kind, specs = I(specs), by = I(if (is.null(by)) character(0) else by),
       at = if (is.null(at)) setNames(list(), character(0)) else lapply(at, I),
       ddf = ddf, method = method, adjust = adjust, table = table_list(as.data.frame(result)),
       linfct = I(unname(result@linfct)))
}

emm_case <- function(id, data_file, data, formula, python_formula, note, calls, fit = NULL,
                     python_residual = NULL) {
  if (is.null(fit)) fit <- lmer(as.formula(formula), data = data, REML = TRUE, control = ctrl)
  engine <- if (inherits(fit, "gls")) paste("nlme", packageVersion("nlme")) else
    paste("lmerTest", packageVersion("lmerTest"), "/ pbkrtest", packageVersion("pbkrtest"))
  list(id = id, engine = paste("emmeans", packageVersion("emmeans"), "/", engine),
       data_file = data_file, formula = formula, python_formula = python_formula,
       python_residual = python_residual, note = note,
       fixef = I(unname(if (inherits(fit, "gls")) coef(fit) else fixef(fit))),
       calls = lapply(calls, function(call) do.call(one_call, c(list(fit), call))))
}

sitka <- read.csv(file.path(pkg_data, "Sitka.csv"), stringsAsFactors = FALSE)
pen <- read.csv(file.path(pkg_data, "Penicillin.csv"), stringsAsFactors = FALSE)
pastes <- read.csv(file.path(data_dir, "kr_pastes_unbal.csv"), stringsAsFactors = FALSE)
sleep <- read.csv(file.path(pkg_data, "sleepstudy.csv"), stringsAsFactors = FALSE)
sleep_unbal <- read.csv(file.path(data_dir, "kr_sleep_unbal.csv"), stringsAsFactors = FALSE)
mmrm <- write_and_reload(simulate_mmrm(), "emmeans_mmrm")

times <- c(152, 201.5, 258)
cases <- list(
  emm_case("sitka_time_treat", "bayeslmm/datasets/Sitka.csv", sitka,
           "size ~ time * treat + (1 | tree)", "size ~ time * treat + (1 | tree)",
           "covariate by factor: treat at chosen times, and at the mean time",
           list(list(kind = "emmeans", specs = "treat", by = "time", at = list(time = times)),
                list(kind = "emmeans", specs = "treat", by = "time", at = list(time = times), ddf = "satterthwaite"),
                list(kind = "emmeans", specs = "treat", ddf = "satterthwaite"),
                list(kind = "emmeans", specs = "treat", ddf = "asymptotic"),
                list(kind = "contrast", specs = "treat", by = "time", at = list(time = times), method = "pairwise"),
                list(kind = "contrast", specs = c("treat", "time"), at = list(time = times), method = "pairwise"),
                list(kind = "contrast", specs = c("treat", "time"), at = list(time = times), method = "trt.vs.ctrl",
                     ddf = "satterthwaite"),
                list(kind = "contrast", specs = "treat", method = "pairwise", ddf = "asymptotic"))),
  emm_case("sitka_log_time", "bayeslmm/datasets/Sitka.csv", sitka,
           "size ~ log(time) * treat + (1 | tree)", "size ~ np.log(time) * treat + (1 | tree)",
           "a transformed covariate: the grid holds time (at its mean or chosen), the model log(time)",
           list(list(kind = "emmeans", specs = "treat", by = "time", at = list(time = c(160, 220))),
                list(kind = "emmeans", specs = "treat", ddf = "satterthwaite"),
                list(kind = "contrast", specs = c("treat", "time"), at = list(time = c(160, 220)),
                     method = "pairwise", adjust = "holm", ddf = "satterthwaite"),
                list(kind = "contrast", specs = c("treat", "time"), at = list(time = c(160, 220)),
                     method = "pairwise", adjust = "bonferroni"))),
  emm_case("sitka_poly_time", "bayeslmm/datasets/Sitka.csv", sitka,
           "size ~ poly(time, 2) * treat + (1 | tree)", "size ~ poly(time, 2) * treat + (1 | tree)",
           "orthogonal polynomials: new grid values use the training basis",
           list(list(kind = "emmeans", specs = "treat", ddf = "satterthwaite"),
                list(kind = "emmeans", specs = "treat", by = "time", at = list(time = c(170, 230))))),
  emm_case("penicillin_sample", "bayeslmm/datasets/Penicillin.csv", pen,
           "diameter ~ sample + (1 | plate)", "diameter ~ sample + (1 | plate)",
           "six-level fixed factor: every adjustment",
           list(list(kind = "emmeans", specs = "sample"),
                list(kind = "emmeans", specs = "sample", ddf = "satterthwaite"),
                list(kind = "contrast", specs = "sample", method = "pairwise"),
                list(kind = "contrast", specs = "sample", method = "trt.vs.ctrl"),
                list(kind = "contrast", specs = "sample", method = "pairwise", adjust = "none"),
                list(kind = "contrast", specs = "sample", method = "pairwise", adjust = "bonferroni"),
                list(kind = "contrast", specs = "sample", method = "pairwise", adjust = "holm"),
                list(kind = "contrast", specs = "sample", method = "pairwise", adjust = "sidak"),
                list(kind = "contrast", specs = "sample", method = "trt.vs.ctrl", adjust = "none"))),
  emm_case("pastes_cask", "tests/data/kr_pastes_unbal.csv", pastes,
           "strength ~ cask + (1 | batch)", "strength ~ cask + (1 | batch)",
           "unbalanced Pastes, cask as a fixed factor",
           list(list(kind = "emmeans", specs = "cask"),
                list(kind = "emmeans", specs = "cask", ddf = "satterthwaite"),
                list(kind = "contrast", specs = "cask", method = "pairwise"),
                list(kind = "contrast", specs = "cask", method = "pairwise", ddf = "satterthwaite"))),
  emm_case("sleep_days_factor", "bayeslmm/datasets/sleepstudy.csv", sleep,
           "Reaction ~ factor(Days) + (1 | Subject)", "Reaction ~ C(Days) + (1 | Subject)",
           "Days as a factor (ten means): Tukey over 45 pairs, Dunnett-x over 9",
           list(list(kind = "emmeans", specs = "Days", ddf = "satterthwaite"),
                list(kind = "contrast", specs = "Days", method = "pairwise", ddf = "satterthwaite"),
                list(kind = "contrast", specs = "Days", method = "trt.vs.ctrl", ddf = "satterthwaite"))),
  emm_case("sleep_days_slope", "bayeslmm/datasets/sleepstudy.csv", sleep,
           "Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days | Subject)",
           "Days a covariate at chosen values",
           list(list(kind = "emmeans", specs = "Days", at = list(Days = c(0, 4.5, 9))),
                list(kind = "emmeans", specs = "Days", at = list(Days = c(0, 4.5, 9)), ddf = "satterthwaite"),
                list(kind = "contrast", specs = "Days", at = list(Days = c(0, 4.5, 9)), method = "pairwise",
                     ddf = "asymptotic"))),
  emm_case("sleep_period_group", "tests/data/kr_sleep_unbal.csv", sleep_unbal,
           "Reaction ~ period * group + (1 | Subject)", "Reaction ~ period * group + (1 | Subject)",
           "unbalanced two-factor design: KR and Satterthwaite differ",
           list(list(kind = "emmeans", specs = "period", by = "group"),
                list(kind = "emmeans", specs = "period", by = "group", ddf = "satterthwaite"),
                list(kind = "emmeans", specs = "period"),
                list(kind = "contrast", specs = "period", by = "group", method = "pairwise"),
                list(kind = "contrast", specs = "period", method = "trt.vs.ctrl", ddf = "satterthwaite"))),
  emm_case("mmrm_visit_arm", "tests/data/emmeans_mmrm.csv", mmrm,
           "chg ~ base + visit * arm + (1 | subject)", "chg ~ base + visit * arm + (1 | subject)",
           "simulated trial, visits x arms with dropout: least-squares means per visit and arm",
           list(list(kind = "emmeans", specs = "arm", by = "visit"),
                list(kind = "emmeans", specs = "arm", by = "visit", ddf = "satterthwaite"),
                list(kind = "emmeans", specs = "arm"),
                list(kind = "emmeans", specs = "arm", at = list(base = c(45, 65))),
                list(kind = "contrast", specs = "arm", by = "visit", method = "trt.vs.ctrl"),
                list(kind = "contrast", specs = c("visit", "arm"), method = "pairwise", ddf = "satterthwaite"))),
  emm_case("mmrm_unstructured", "tests/data/emmeans_mmrm.csv", mmrm,
           "gls(chg ~ base + visit * arm, corSymm(form = ~ visitnum | subject), varIdent(form = ~ 1 | visit))",
           "chg ~ base + visit * arm",
           "the MMRM: unstructured residual covariance per subject (nlme::gls, REML); emmeans' gls
            support gives asymptotic inference only, so estimates, SE and z tests are compared",
           list(list(kind = "emmeans", specs = "arm", by = "visit", ddf = "asymptotic"),
                list(kind = "emmeans", specs = "arm", ddf = "asymptotic"),
                list(kind = "contrast", specs = "arm", by = "visit", method = "trt.vs.ctrl", ddf = "asymptotic"),
                list(kind = "contrast", specs = "visit", by = "arm", method = "pairwise", ddf = "asymptotic")),
           fit = gls(chg ~ base + visit * arm, data = transform(mmrm, visitnum = as.integer(sub("V", "", visit))),
                     correlation = corSymm(form = ~ visitnum | subject), weights = varIdent(form = ~ 1 | visit),
                     method = "REML", control = glsControl(tolerance = 1e-10, msTol = 1e-10)),
           python_residual = "us(visit | subject)")
)
names(cases) <- vapply(cases, function(x) x$id, character(1))
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), out_json)
cat("wrote", out_json, "\n")
