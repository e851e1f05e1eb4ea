suppressMessages({library(nlme); library(jsonlite)})
sitka <- read.csv("bayeslmm/datasets/Sitka.csv")
out <- list()
fit1 <- gls(size ~ time * treat, data = sitka, correlation = corAR1(form = ~ visit | tree),
            weights = varIdent(form = ~ 1 | treat), method = "REML")
out$sitka_gls_ar1_het_reml <- list(call = "gls(size ~ time*treat, corAR1(~visit|tree), varIdent(~1|treat), REML)",
  logLik = as.numeric(logLik(fit1)), df = attr(logLik(fit1), "df"), fixef = as.list(coef(fit1)), sigma = fit1$sigma,
  rho = as.numeric(coef(fit1$modelStruct$corStruct, unconstrained = FALSE)),
  ratio = as.numeric(coef(fit1$modelStruct$varStruct, unconstrained = FALSE)))
fit2 <- lme(size ~ time * treat, random = ~ 1 | tree, data = sitka, correlation = corCompSymm(form = ~ 1 | tree),
            weights = varIdent(form = ~ 1 | treat), method = "ML")
fit3 <- gls(size ~ time * treat, data = sitka, correlation = corCompSymm(form = ~ 1 | tree),
            weights = varIdent(form = ~ 1 | treat), method = "ML")
out$sitka_gls_cs_het_ml <- list(call = "gls(size ~ time*treat, corCompSymm(~1|tree), varIdent(~1|treat), ML)",
  logLik = as.numeric(logLik(fit3)), df = attr(logLik(fit3), "df"), fixef = as.list(coef(fit3)), sigma = fit3$sigma,
  rho = as.numeric(coef(fit3$modelStruct$corStruct, unconstrained = FALSE)),
  ratio = as.numeric(coef(fit3$modelStruct$varStruct, unconstrained = FALSE)))
fit4 <- lme(size ~ time * treat, random = ~ 1 | tree, data = sitka, correlation = corAR1(form = ~ visit | tree),
            weights = varIdent(form = ~ 1 | treat), method = "REML")
out$sitka_lme_ar1_het_reml <- list(call = "lme(size ~ time*treat, ~1|tree, corAR1(~visit|tree), varIdent(~1|treat), REML)",
  logLik = as.numeric(logLik(fit4)), df = attr(logLik(fit4), "df"), fixef = as.list(fixef(fit4)), sigma = fit4$sigma,
  rho = as.numeric(coef(fit4$modelStruct$corStruct, unconstrained = FALSE)),
  ratio = as.numeric(coef(fit4$modelStruct$varStruct, unconstrained = FALSE)))
write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/het_reference.json")
