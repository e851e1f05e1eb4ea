# lmerTest's printed summary() of REML/ML fits, for tests/results/test_printing.py (which compares
# the row labels and the numbers as printed, their digits included). lmerTest's summary is lme4's
# with the df and p-values of the fixed effects (Satterthwaite by default, or ddf = "Kenward-Roger").
# Run from the repo root: Rscript tests/reference/make_summary_reference.R
suppressMessages(library(lmerTest))
options(width = 80)
save_summary <- function(fit, key, ...) {
  writeLines(capture.output(print(summary(fit, ...))), sprintf("tests/reference/lmerTest_summary_%s.txt", key))
}
for (method in c("reml", "ml")) {
  fit <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = method == "reml")
  save_summary(fit, sprintf("sleepstudy_%s", method))
}
save_summary(lmer(Reaction ~ Days + (Days | Subject), sleepstudy), "sleepstudy_kr", ddf = "Kenward-Roger")
save_summary(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin), "penicillin_reml")
Sitka <- read.csv("bayeslmm/datasets/Sitka.csv")
save_summary(lmer(size ~ time * treat + (1 | tree), Sitka), "sitka_reml")  # scientific notation
