# make_kr_reference.R -- Kenward-Roger and type-3 F-test reference values for bayeslmm
#
# How to rerun (from the repository root):
#
#     Rscript tests/reference/make_kr_reference.R
#
# Produced with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, jsonlite.
#
# What it does:
#   (a) derives small unbalanced data sets from the packaged sleepstudy, Penicillin and
#       Pastes CSVs (rows dropped with fixed seeds; factors made from Days and Subject)
#       and writes them to tests/data/kr_*.csv (read back before fitting, so R sees
#       exactly what Python reads);
#   (b) fits each model by REML with lmerTest::lmer (bobyqa with a tiny final trust
#       radius, so the optimum is accurate to ~1e-8 and does not limit the comparison);
#   (c) records, per case: the fixed effects, lme4's standard errors, Satterthwaite df,
#       pbkrtest's Kenward-Roger standard errors (sqrt diag of vcovAdj) and df
#       (lmerTest's summary(ddf = "Kenward-Roger"), i.e. pbkrtest::Lb_ddf per unit
#       contrast), lmerTest's anova(type = 3) tables with both ddf methods and its
#       sequential anova(type = 1) with Satterthwaite's;
#   and writes everything to tests/reference/kr_reference.json (id -> case).
# The tests never call R.

suppressPackageStartupMessages({
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

if (!dir.exists(file.path("tests", "reference")))
  stop("run this script from the repository root")
data_dir <- file.path("tests", "data")
out_json <- file.path("tests", "reference", "kr_reference.json")
pkg_data <- file.path("bayeslmm", "datasets")

write_and_reload <- function(df, name) {
  path <- file.path(data_dir, paste0(name, ".csv"))
  write.csv(df, path, row.names = FALSE)
  read.csv(path, stringsAsFactors = FALSE)
}

drop_rows <- function(df, k, seed) {
  set.seed(seed)
  df[-sort(sample(nrow(df), k)), , drop = FALSE]
}

ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-2, rhoend = 1e-10, maxfun = 1e5))

anova_list <- function(tab) {
  list(terms = I(rownames(tab)), SumSq = I(tab[["Sum Sq"]]), MeanSq = I(tab[["Mean Sq"]]),
       NumDF = I(tab[["NumDF"]]), DenDF = I(tab[["DenDF"]]), F = I(tab[["F value"]]),
       p = I(tab[["Pr(>F)"]]))
}

kr_case <- function(id, data_file, data, formula, note) {
  fit <- lmer(as.formula(formula), data = data, REML = TRUE, control = ctrl)
  s_sat <- summary(fit, ddf = "Satterthwaite")$coefficients
  s_kr <- summary(fit, ddf = "Kenward-Roger")$coefficients
  Vadj <- as.matrix(vcovAdj(fit))
  list(id = id, engine = paste("lmerTest", packageVersion("lmerTest"), "/ pbkrtest",
                               packageVersion("pbkrtest")),
       data_file = data_file, formula = formula, note = note,
       theta = I(unname(getME(fit, "theta"))), sigma = sigma(fit),
       terms = I(rownames(s_sat)), estimate = I(unname(fixef(fit))),
       se = I(unname(s_sat[, "Std. Error"])), df_satterthwaite = I(unname(s_sat[, "df"])),
       se_kenward_roger = I(unname(sqrt(diag(Vadj)))),
       df_kenward_roger = I(unname(s_kr[, "df"])), t_kenward_roger = I(unname(s_kr[, "t value"])),
       vcov_kenward_roger = I(unname(Vadj)),
       anova_satterthwaite = anova_list(anova(fit, type = 3, ddf = "Satterthwaite")),
       anova_kenward_roger = anova_list(anova(fit, type = 3, ddf = "Kenward-Roger")),
       anova_type1_satterthwaite = anova_list(anova(fit, type = 1, ddf = "Satterthwaite")))
}

sleep <- read.csv(file.path(pkg_data, "sleepstudy.csv"), stringsAsFactors = FALSE)
sleep_unbal <- drop_rows(sleep, 30, seed = 20240501)
sleep_unbal$period <- ifelse(sleep_unbal$Days <= 2, "early", ifelse(sleep_unbal$Days <= 5, "mid", "late"))
subjects <- sort(unique(sleep$Subject))
sleep_unbal$group <- ifelse(sleep_unbal$Subject %in% subjects[seq(1, length(subjects), by = 2)], "A", "B")
sleep_unbal <- write_and_reload(sleep_unbal, "kr_sleep_unbal")

pen <- read.csv(file.path(pkg_data, "Penicillin.csv"), stringsAsFactors = FALSE)
pen_unbal <- write_and_reload(drop_rows(pen, 20, seed = 7), "kr_penicillin_unbal")

pastes <- read.csv(file.path(pkg_data, "Pastes.csv"), stringsAsFactors = FALSE)
pastes_unbal <- write_and_reload(drop_rows(pastes, 12, seed = 11), "kr_pastes_unbal")

sitka <- read.csv(file.path(pkg_data, "Sitka.csv"), stringsAsFactors = FALSE)

cases <- list(
  kr_case("sleep_unbal_slope", "tests/data/kr_sleep_unbal.csv", sleep_unbal,
          "Reaction ~ Days + (Days | Subject)",
          "sleepstudy without 30 random rows: KR se differ from lme4's"),
  kr_case("sleep_days_group", "tests/data/kr_sleep_unbal.csv", sleep_unbal,
          "Reaction ~ Days * group + (Days | Subject)",
          "covariate by two-level factor; Days is contained in Days:group for type 3"),
  kr_case("sleep_period_group", "tests/data/kr_sleep_unbal.csv", sleep_unbal,
          "Reaction ~ period * group + (1 | Subject)",
          "three-level factor by two-level factor: multi-df type-3 F tests"),
  kr_case("penicillin_sample_fixed", "tests/data/kr_penicillin_unbal.csv", pen_unbal,
          "diameter ~ sample + (1 | plate)",
          "one six-level fixed factor (lmerTest uses type-1 contrasts for a single term)"),
  kr_case("penicillin_crossed", "tests/data/kr_penicillin_unbal.csv", pen_unbal,
          "diameter ~ 1 + (1 | plate) + (1 | sample)",
          "crossed grouping factors, unbalanced"),
  kr_case("pastes_nested", "tests/data/kr_pastes_unbal.csv", pastes_unbal,
          "strength ~ 1 + (1 | batch/cask)",
          "nested grouping factors, unbalanced"),
  kr_case("sitka_time_treat", "bayeslmm/datasets/Sitka.csv", sitka,
          "size ~ time * treat + (1 | tree)",
          "the public reference model, here with the KR anova too")
)
names(cases) <- vapply(cases, function(x) x$id, character(1))
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE), out_json)
cat("wrote", out_json, "\n")
