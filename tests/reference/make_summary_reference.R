# lme4's printed summary() of the sleepstudy fits, for tests/results/test_printing.py (which parses the
# numbers and row labels). Run from the repo root: Rscript tests/reference/make_summary_reference.R
suppressMessages(library(lme4))
options(width = 80)
for (method in c("reml", "ml")) {
  fit <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = method == "reml")
  writeLines(capture.output(print(summary(fit))), sprintf("tests/reference/lme4_summary_sleepstudy_%s.txt", method))
}
fit <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
writeLines(capture.output(print(summary(fit))), "tests/reference/lme4_summary_penicillin_reml.txt")
