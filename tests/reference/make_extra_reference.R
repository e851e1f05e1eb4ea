# make_extra_reference.R -- extra lme4 / nlme reference values for bayeslmm tests
#
# How to rerun (from the repository root):
#
#     Rscript tests/reference/make_extra_reference.R
#
# Produced with R 4.2.2 (Debian bookworm, r-base-core 4.2.2), lme4 1.1.31,
# nlme 3.1.162, Matrix 1.5-3, jsonlite 1.8.4 (Debian packages r-cran-lme4,
# r-cran-nlme, r-cran-jsonlite).
#
# What it does:
#   (a) simulates small datasets with fixed seeds and writes each to
#       tests/data/<name>.csv (numeric columns rounded to 6 decimals);
#   (b) reads every CSV back (so the fits use exactly the values a Python
#       reader sees), fits lme4::lmer (or nlme::gls for the models without a
#       random term) and writes all cases to
#       tests/reference/extra_reference.json, a dict id -> case with the same
#       schema as shared/reference/public_reference.json plus the keys
#       "data_file", "note", "lme4_converged" and "lme4_messages".
#
# The script stops if any lmer fit reports a convergence problem, or if a
# case does not behave as designed (e.g. singular_reml not singular).
# The tests never call R; they only read the JSON and CSV files.

suppressPackageStartupMessages({
  library(lme4)
  library(nlme)
  library(jsonlite)
})

# Resolve paths relative to the repository root (the working directory).
data_dir <- file.path("tests", "data")
out_json <- file.path("tests", "reference", "extra_reference.json")
if (!dir.exists(file.path("tests", "reference")))
  stop("run this script from the repository root")
dir.create(data_dir, showWarnings = FALSE, recursive = TRUE)

lme4_engine <- paste("lme4", packageVersion("lme4"))
nlme_engine <- paste("nlme", packageVersion("nlme"))

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

named_list <- function(x) as.list(x)   # named numeric vector -> JSON object

# zero-padded labels, e.g. lab("g", 1:12) -> "g01", ..., "g12"
lab <- function(prefix, i, width = nchar(max(i))) {
  sprintf(paste0("%s%0", width, "d"), prefix, i)
}

# n draws from N(0, Sigma) as rows of a matrix
rmvn <- function(n, Sigma) {
  matrix(rnorm(n * ncol(Sigma)), n) %*% chol(Sigma)
}

# covariance matrix from sds and a correlation matrix
cov_from <- function(sd, corr) diag(sd) %*% corr %*% diag(sd)

# round numeric columns, write the CSV, and read it back as the analysis data
write_and_reload <- function(df, name) {
  num <- vapply(df, is.numeric, logical(1)) & !vapply(df, is.integer, logical(1))
  df[num] <- lapply(df[num], round, digits = 6)
  path <- file.path(data_dir, paste0(name, ".csv"))
  write.csv(df, path, row.names = FALSE)
  read.csv(path, stringsAsFactors = FALSE)
}

# Fit lmer, recording every warning and message.  Stops on any warning
# (convergence warnings in particular); messages such as "boundary (singular)
# fit" or "fixed-effect model matrix is rank deficient" are kept.
fit_lmer <- function(formula, data, REML) {
  msgs <- character(0)
  fit <- withCallingHandlers(
    lmer(formula, data = data, REML = REML),
    warning = function(w) stop("lmer warning: ", conditionMessage(w)),
    message = function(m) {
      msgs <<- c(msgs, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    }
  )
  # optinfo also records the "boundary (singular) fit" message, which is not
  # a convergence failure; everything else there is.
  conv_msgs <- c(fit@optinfo$conv$lme4$messages, unlist(fit@optinfo$warnings))
  conv_msgs <- conv_msgs[!grepl("^boundary \\(singular\\) fit", conv_msgs)]
  if (length(conv_msgs) > 0 || fit@optinfo$conv$opt != 0)
    stop("lmer did not converge cleanly: ", paste(conv_msgs, collapse = "; "))
  attr(fit, "msgs") <- msgs
  fit
}

# Refit with bobyqa and a very small final trust radius: the default lmer
# optimizer (nloptwrap) stops with theta accurate to roughly 1e-5..1e-4, so
# each case also records this tighter optimum ("tight_refit") for tests that
# want to compare theta / varcorr more closely.
tight_refit <- function(formula, data, REML) {
  ctrl <- lmerControl(optimizer = "bobyqa",
                      optCtrl = list(rhobeg = 2e-2, rhoend = 1e-10, maxfun = 1e5))
  f2 <- suppressMessages(lmer(formula, data = data, REML = REML, control = ctrl))
  vc <- as.data.frame(VarCorr(f2))
  re <- as.data.frame(ranef(f2, condVar = TRUE))
  list(optimizer = "bobyqa(rhobeg = 2e-2, rhoend = 1e-10)",
       logLik = as.numeric(logLik(f2)),
       theta = I(unname(getME(f2, "theta"))),
       sigma = sigma(f2),
       fixef = named_list(fixef(f2)),
       se = named_list(setNames(sqrt(diag(as.matrix(vcov(f2)))), names(fixef(f2)))),
       varcorr = data.frame(grp = vc$grp, var1 = vc$var1, var2 = vc$var2,
                            vcov = vc$vcov, sdcor = vc$sdcor, stringsAsFactors = FALSE),
       ranef = list(grpvar = as.character(re$grpvar), term = as.character(re$term),
                    grp = as.character(re$grp), condval = re$condval,
                    condsd = re$condsd))
}


lmer_case <- function(id, name, data, formula, REML = TRUE, note = "") {
  fit <- tryCatch(fit_lmer(as.formula(formula), data, REML),
                  error = function(e) stop(id, ": ", conditionMessage(e), call. = FALSE))
  V <- as.matrix(vcov(fit))
  ll <- logLik(fit)
  vc <- as.data.frame(VarCorr(fit))
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  list(
    id = id,
    engine = lme4_engine,
    dataset = name,
    formula = formula,
    method = if (REML) "REML" else "ML",
    nobs = nobs(fit),
    ngrps = named_list(ngrps(fit)),
    fixef = named_list(fixef(fit)),
    se = named_list(setNames(sqrt(diag(V)), names(fixef(fit)))),
    vcov = unname(V),
    sigma = sigma(fit),
    theta = I(unname(getME(fit, "theta"))),       # always a JSON list
    varcorr = data.frame(grp = vc$grp, var1 = vc$var1, var2 = vc$var2,
                         vcov = vc$vcov, sdcor = vc$sdcor,
                         stringsAsFactors = FALSE),
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    AIC = AIC(fit),
    BIC = BIC(fit),
    deviance_or_REMLcrit = if (REML) REMLcrit(fit) else deviance(fit),
    singular = isSingular(fit),
    ranef = list(grpvar = as.character(re$grpvar), term = as.character(re$term),
                 grp = as.character(re$grp), condval = re$condval,
                 condsd = re$condsd),
    fitted_head = unname(head(fitted(fit), 10)),
    data_file = file.path("tests", "data", paste0(name, ".csv")),
    note = note,
    lme4_converged = TRUE,
    lme4_messages = I(attr(fit, "msgs")),
    tight_refit = tight_refit(as.formula(formula), data, REML)
  )
}

gls_case <- function(id, name, data, formula, REML = TRUE, note = "") {
  method <- if (REML) "REML" else "ML"
  fit <- nlme::gls(as.formula(formula), data = data, method = method)
  V <- as.matrix(vcov(fit))
  ll <- logLik(fit)
  s <- fit$sigma
  list(
    id = id,
    engine = nlme_engine,
    dataset = name,
    formula = formula,
    method = method,
    nobs = nobs(fit),
    ngrps = setNames(list(), character(0)),           # {}
    fixef = named_list(coef(fit)),
    se = named_list(setNames(sqrt(diag(V)), names(coef(fit)))),
    vcov = unname(V),
    sigma = s,
    theta = I(numeric(0)),                            # []
    varcorr = data.frame(grp = "Residual", var1 = NA_character_,
                         var2 = NA_character_, vcov = s^2, sdcor = s),
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    AIC = AIC(fit),
    BIC = BIC(fit),
    deviance_or_REMLcrit = -2 * as.numeric(ll),
    singular = NA,                                    # null: no random effects
    ranef = list(grpvar = character(0), term = character(0),
                 grp = character(0), condval = numeric(0), condsd = numeric(0)),
    fitted_head = unname(head(as.numeric(fitted(fit)), 10)),
    data_file = file.path("tests", "data", paste0(name, ".csv")),
    note = note
  )
}

cases <- list()
add <- function(case) cases[[case$id]] <<- case

# ---------------------------------------------------------------------------
# 1. three-level nesting: y ~ x + (1 | a/b/c)
#    6 a x 4 b (labels b1..b4 repeated within each a) x 3 c x 4 obs = 288 rows
# ---------------------------------------------------------------------------
set.seed(101)
d <- expand.grid(rep = 1:4, c = paste0("c", 1:3), b = paste0("b", 1:4),
                 a = paste0("a", 1:6), stringsAsFactors = FALSE)
d <- d[, c("a", "b", "c")]
ua <- rnorm(6, sd = 1.5);  names(ua) <- paste0("a", 1:6)
ab <- paste(d$a, d$b);     uab <- rnorm(24, sd = 1.0);  names(uab) <- unique(ab)
abc <- paste(d$a, d$b, d$c); uabc <- rnorm(72, sd = 0.8); names(uabc) <- unique(abc)
d$x <- rnorm(nrow(d))
d$y <- 10 + 0.5 * d$x + ua[d$a] + uab[ab] + uabc[abc] + rnorm(nrow(d), sd = 0.7)
nested3 <- write_and_reload(d, "nested3")
nested_note <- paste("Simulated: sd(a)=1.5, sd(a:b)=1.0, sd(a:b:c)=0.8, residual sd 0.7;",
                     "b and c labels repeat within their parent (implicit nesting, a/b/c",
                     "expands to (1|a) + (1|b:a) + (1|c:(b:a))).")
add(lmer_case("nested3_reml", "nested3", nested3, "y ~ x + (1 | a/b/c)", TRUE, nested_note))
add(lmer_case("nested3_ml", "nested3", nested3, "y ~ x + (1 | a/b/c)", FALSE, nested_note))

# ---------------------------------------------------------------------------
# 2. three crossed factors: y ~ x + (1 | f1) + (1 | f2) + (1 | f3)
#    600 rows, random (unbalanced) assignment to 30 x 12 x 5 levels
# ---------------------------------------------------------------------------
set.seed(202)
n <- 600
d <- data.frame(f1 = lab("p", sample(1:30, n, replace = TRUE), 2),
                f2 = lab("q", sample(1:12, n, replace = TRUE), 2),
                f3 = lab("r", sample(1:5, n, replace = TRUE), 1),
                stringsAsFactors = FALSE)
u1 <- setNames(rnorm(30, sd = 1.0), lab("p", 1:30, 2))
u2 <- setNames(rnorm(12, sd = 0.7), lab("q", 1:12, 2))
u3 <- setNames(rnorm(5, sd = 1.2), lab("r", 1:5, 1))
d$x <- rnorm(n)
d$y <- 5 - 0.8 * d$x + u1[d$f1] + u2[d$f2] + u3[d$f3] + rnorm(n, sd = 1)
crossed3 <- write_and_reload(d, "crossed3")
add(lmer_case("crossed3_reml", "crossed3", crossed3,
              "y ~ x + (1 | f1) + (1 | f2) + (1 | f3)", TRUE,
              "Simulated: sd(f1)=1.0 (30 levels), sd(f2)=0.7 (12), sd(f3)=1.2 (5), residual sd 1; random unbalanced assignment."))

# ---------------------------------------------------------------------------
# 3. correlated random slopes on two covariates: y ~ x1 + x2 + (1 + x1 + x2 | g)
#    40 groups x 10..14 obs
# ---------------------------------------------------------------------------
set.seed(303)
ng <- 40
sizes <- sample(10:14, ng, replace = TRUE)
g <- rep(lab("g", 1:ng, 2), sizes)
R <- matrix(c(1, 0.4, -0.3,
              0.4, 1, 0.2,
              -0.3, 0.2, 1), 3)
U <- rmvn(ng, cov_from(c(1.0, 0.5, 0.7), R))
rownames(U) <- lab("g", 1:ng, 2)
d <- data.frame(g = g, x1 = rnorm(length(g)), x2 = runif(length(g), -1, 1),
                stringsAsFactors = FALSE)
d$y <- (2 + U[d$g, 1]) + (1 + U[d$g, 2]) * d$x1 + (-0.5 + U[d$g, 3]) * d$x2 +
  rnorm(nrow(d), sd = 0.6)
slopes2 <- write_and_reload(d, "slopes2")
slopes_note <- "Simulated: sds (1, 0.5, 0.7), correlations (int,x1)=0.4, (int,x2)=-0.3, (x1,x2)=0.2, residual sd 0.6."
add(lmer_case("slopes2_reml", "slopes2", slopes2, "y ~ x1 + x2 + (1 + x1 + x2 | g)", TRUE, slopes_note))
add(lmer_case("slopes2_ml", "slopes2", slopes2, "y ~ x1 + x2 + (1 + x1 + x2 | g)", FALSE, slopes_note))

# ---------------------------------------------------------------------------
# 4. categorical random slopes: y ~ trt + (trt | g) and y ~ trt + (0 + trt | g)
#    30 groups, every group sees each of trt = a, b, c four times (360 rows)
# ---------------------------------------------------------------------------
set.seed(404)
ng <- 30
d <- expand.grid(rep = 1:4, trt = c("a", "b", "c"), g = lab("g", 1:ng, 2),
                 stringsAsFactors = FALSE)[, c("g", "trt")]
# random cell means per group for a, b, c
Rm <- matrix(c(1, 0.6, 0.3,
               0.6, 1, 0.5,
               0.3, 0.5, 1), 3)
U <- rmvn(ng, cov_from(c(1.0, 1.2, 0.8), Rm))
rownames(U) <- lab("g", 1:ng, 2); colnames(U) <- c("a", "b", "c")
mu <- c(a = 3, b = 4, c = 2.5)
d$y <- mu[d$trt] + U[cbind(d$g, d$trt)] + rnorm(nrow(d), sd = 0.8)
catslope <- write_and_reload(d, "catslope")
cat_note <- paste("Simulated: per-group cell means for trt a/b/c with sds (1, 1.2, 0.8) and",
                  "correlations (0.6, 0.3, 0.5), residual sd 0.8. catslope_reml and",
                  "catslope0_reml are reparametrisations of the same model: logLik, fixef,",
                  "sigma and fitted values agree (up to optimizer tolerance); theta/varcorr differ.")
add(lmer_case("catslope_reml", "catslope", catslope, "y ~ trt + (trt | g)", TRUE, cat_note))
add(lmer_case("catslope0_reml", "catslope", catslope, "y ~ trt + (0 + trt | g)", TRUE, cat_note))

# ---------------------------------------------------------------------------
# 5. unbalanced groups (sizes 1..20, six singletons): y ~ x + (1 + x | g)
# ---------------------------------------------------------------------------
set.seed(505)
sizes <- c(rep(1, 6), sample(2:20, 29, replace = TRUE), 20)
sizes <- sample(sizes)                       # singletons scattered among groups
ng <- length(sizes)
g <- rep(lab("g", 1:ng, 2), sizes)
U <- rmvn(ng, cov_from(c(1.0, 0.6), matrix(c(1, -0.4, -0.4, 1), 2)))
rownames(U) <- lab("g", 1:ng, 2)
d <- data.frame(g = g, x = rnorm(length(g)), stringsAsFactors = FALSE)
d$y <- (1 + U[d$g, 1]) + (0.7 + U[d$g, 2]) * d$x + rnorm(nrow(d), sd = 0.5)
unbalanced <- write_and_reload(d, "unbalanced")
unb_note <- sprintf("Simulated: %d groups, sizes %d..%d with %d groups of size one; sds (1, 0.6), corr -0.4, residual sd 0.5.",
                    ng, min(sizes), max(sizes), sum(sizes == 1))
add(lmer_case("unbalanced_reml", "unbalanced", unbalanced, "y ~ x + (1 + x | g)", TRUE, unb_note))
add(lmer_case("unbalanced_ml", "unbalanced", unbalanced, "y ~ x + (1 + x | g)", FALSE, unb_note))

# ---------------------------------------------------------------------------
# 6. two terms on one factor vs double-bar: (1 | g) + (0 + x | g)  ==  (x || g)
# ---------------------------------------------------------------------------
set.seed(606)
ng <- 30
d <- data.frame(g = rep(lab("g", 1:ng, 2), each = 10), stringsAsFactors = FALSE)
u0 <- setNames(rnorm(ng, sd = 1.0), lab("g", 1:ng, 2))
u1 <- setNames(rnorm(ng, sd = 0.5), lab("g", 1:ng, 2))
d$x <- rnorm(nrow(d))
d$y <- 3 + u0[d$g] + (0.4 + u1[d$g]) * d$x + rnorm(nrow(d), sd = 0.7)
twoterms <- write_and_reload(d, "twoterms")
two_note <- paste("Simulated: independent intercept sd 1 and slope sd 0.5, residual sd 0.7.",
                  "twoterms_reml and uncorr_reml are the same model and must agree.",
                  "lme4 names the second term's group 'g.1' in varcorr (as.data.frame(VarCorr)).")
add(lmer_case("twoterms_reml", "twoterms", twoterms, "y ~ x + (1 | g) + (0 + x | g)", TRUE, two_note))
add(lmer_case("uncorr_reml", "twoterms", twoterms, "y ~ x + (x || g)", TRUE, two_note))

# ---------------------------------------------------------------------------
# 7. singular fit: zero true slope variance, y ~ x + (1 + x | g)
# ---------------------------------------------------------------------------
set.seed(707)
ng <- 20
d <- data.frame(g = rep(lab("g", 1:ng, 2), each = 8), stringsAsFactors = FALSE)
u0 <- setNames(rnorm(ng, sd = 1.0), lab("g", 1:ng, 2))
d$x <- rnorm(nrow(d))
d$y <- 2 + u0[d$g] + 0.5 * d$x + rnorm(nrow(d), sd = 1)
singular <- write_and_reload(d, "singular")
sing_case <- lmer_case("singular_reml", "singular", singular, "y ~ x + (1 + x | g)", TRUE,
                       paste("Simulated with intercept sd 1 and NO slope variance (residual sd 1);",
                             "lme4 gives a boundary (singular) fit: theta[3] == 0, i.e. the",
                             "intercept-slope correlation is +1 (slope sd small but non-zero);",
                             "the covariance matrix is rank deficient."))
if (!isTRUE(sing_case$singular)) stop("singular_reml is not singular; change the seed")
add(sing_case)

# ---------------------------------------------------------------------------
# 8. categorical interactions: y ~ a * b + z + (1 | g)
#    a in {u, v, w} (reference u), b in {A, B} (reference A)
# ---------------------------------------------------------------------------
set.seed(808)
ng <- 20
n <- 300
d <- data.frame(g = lab("g", sample(1:ng, n, replace = TRUE), 2),
                a = sample(c("u", "v", "w"), n, replace = TRUE),
                b = sample(c("A", "B"), n, replace = TRUE),
                stringsAsFactors = FALSE)
d$z <- rnorm(n, mean = 5, sd = 2)
ug <- setNames(rnorm(ng, sd = 0.9), lab("g", 1:ng, 2))
eff <- c(u.A = 0, v.A = 0.8, w.A = -0.5, u.B = 1.0, v.B = 2.5, w.B = 0.2)
d$y <- 1 + eff[paste(d$a, d$b, sep = ".")] + 0.3 * d$z + ug[d$g] + rnorm(n, sd = 1)
interact <- write_and_reload(d, "interact")
add(lmer_case("interact_reml", "interact", interact, "y ~ a * b + z + (1 | g)", TRUE,
              "a has levels u, v, w (reference u), b has A, B (reference A); treatment contrasts, lme4 fixef names kept as-is (e.g. 'av:bB')."))

# ---------------------------------------------------------------------------
# 9. transformations in the formula: y ~ log(x) + scale(z) + (1 | g)
# ---------------------------------------------------------------------------
set.seed(909)
ng <- 25
d <- data.frame(g = rep(lab("g", 1:ng, 2), each = 10), stringsAsFactors = FALSE)
d$x <- exp(rnorm(nrow(d), sd = 0.8))          # strictly positive
d$z <- rnorm(nrow(d), mean = 50, sd = 10)
ug <- setNames(rnorm(ng, sd = 1), lab("g", 1:ng, 2))
d$y <- 2 + 1.5 * log(d$x) + 0.05 * (d$z - 50) + ug[d$g] + rnorm(nrow(d), sd = 0.8)
transform <- write_and_reload(d, "transform")
stopifnot(all(transform$x > 0))
add(lmer_case("transform_reml", "transform", transform, "y ~ log(x) + scale(z) + (1 | g)", TRUE,
              "scale(z) standardises z with the sample mean and sample sd (n-1) of the rows used."))

# ---------------------------------------------------------------------------
# 10. missing values: NA in y (7 rows) and in x (5 other rows); na.omit
# ---------------------------------------------------------------------------
set.seed(1010)
ng <- 20
d <- data.frame(g = rep(lab("g", 1:ng, 2), each = 10), stringsAsFactors = FALSE)
d$x <- rnorm(nrow(d))
ug <- setNames(rnorm(ng, sd = 1), lab("g", 1:ng, 2))
d$y <- 1 + 0.6 * d$x + ug[d$g] + rnorm(nrow(d), sd = 0.7)
na_y <- c(3, sort(sample(setdiff(11:200, 3), 6)))               # row 3 among them
na_x <- c(7, sort(sample(setdiff(11:200, na_y), 4)))             # row 7 among them
d$y[na_y] <- NA
d$x[na_x] <- NA
missing <- write_and_reload(d, "missing")
stopifnot(sum(is.na(missing$y)) == 7, sum(is.na(missing$x)) == 5,
          !any(is.na(missing$y) & is.na(missing$x)))
add(lmer_case("missing_reml", "missing", missing, "y ~ x + (1 | g)", TRUE,
              sprintf(paste("NA in y at rows %s and in x at rows %s (1-based CSV data rows);",
                            "lme4 default na.action = na.omit drops them, so nobs = 188 and",
                            "fitted_head is the first 10 fitted values of the complete rows",
                            "(rows 3 and 7 are skipped)."),
                      paste(na_y, collapse = ","), paste(na_x, collapse = ","))))

# ---------------------------------------------------------------------------
# 11. aliased (rank-deficient) fixed effects: x2 = 2 * x exactly
# ---------------------------------------------------------------------------
set.seed(1111)
ng <- 20
d <- data.frame(g = rep(lab("g", 1:ng, 2), each = 10), stringsAsFactors = FALSE)
d$x <- round(rnorm(nrow(d)), 6)
d$x2 <- 2 * d$x
ug <- setNames(rnorm(ng, sd = 1), lab("g", 1:ng, 2))
d$y <- 1 + 0.6 * d$x + ug[d$g] + rnorm(nrow(d), sd = 0.7)
aliased <- write_and_reload(d, "aliased")
stopifnot(all(aliased$x2 == 2 * aliased$x))   # exact in the CSV as read back
al_case <- lmer_case("aliased_reml", "aliased", aliased, "y ~ x + x2 + (1 | g)", TRUE,
                     "x2 == 2*x exactly; lme4 drops the aliased column x2 (message 'fixed-effect model matrix is rank deficient so dropping 1 column / coefficient') and keeps (Intercept), x.")
stopifnot(identical(names(al_case$fixef), c("(Intercept)", "x")))
add(al_case)

# ---------------------------------------------------------------------------
# 12. integer grouping column: g = 1..25 stored as numbers
# ---------------------------------------------------------------------------
set.seed(1212)
ng <- 25
d <- data.frame(g = rep(1:ng, times = sample(4:10, ng, replace = TRUE)))
d$x <- rnorm(nrow(d))
ug <- rnorm(ng, sd = 1)
d$y <- 4 - 0.3 * d$x + ug[d$g] + rnorm(nrow(d), sd = 0.8)
numgroup <- write_and_reload(d, "numgroup")
stopifnot(is.integer(numgroup$g))
add(lmer_case("numgroup_reml", "numgroup", numgroup, "y ~ x + (1 | g)", TRUE,
              "g is an integer column (1..25) in the CSV; lme4 turns it into a factor whose levels sort numerically (1, 2, ..., 10, ...), so ranef grp labels are '1','2',...,'25' in numeric order (not string order)."))

# ---------------------------------------------------------------------------
# 13. no random term: y ~ x + f with nlme::gls (REML and ML)
# ---------------------------------------------------------------------------
set.seed(1313)
n <- 150
d <- data.frame(f = sample(c("k1", "k2", "k3", "k4"), n, replace = TRUE),
                stringsAsFactors = FALSE)
d$x <- rnorm(n)
d$y <- 2 + 0.9 * d$x + c(k1 = 0, k2 = 0.5, k3 = -1, k4 = 1.5)[d$f] + rnorm(n, sd = 1.1)
lmdata <- write_and_reload(d, "lmdata")
lm_fit <- lm(y ~ x + f, data = lmdata)
lm_note <- function(REML) {
  paste0("No random term: fitted with nlme::gls(y ~ x + f, method = '", if (REML) "REML" else "ML",
         "'). ngrps {}, theta [], ranef empty, singular null; varcorr holds only the residual. ",
         "deviance_or_REMLcrit = -2*logLik. vcov/se are those of nlme (for both methods they equal lm's, ",
         "i.e. they use RSS/(n-p), not the ML sigma). ",
         if (REML) "sigma is the usual unbiased residual sd (same as lm); logLik equals logLik(lm(...), REML = TRUE)."
         else "sigma is the ML estimate sqrt(RSS/n); logLik equals logLik(lm(...)).")
}
lm_reml <- gls_case("lm_reml", "lmdata", lmdata, "y ~ x + f", TRUE, lm_note(TRUE))
lm_ml <- gls_case("lm_ml", "lmdata", lmdata, "y ~ x + f", FALSE, lm_note(FALSE))
stopifnot(abs(lm_reml$logLik - as.numeric(logLik(lm_fit, REML = TRUE))) < 1e-8,
          abs(lm_ml$logLik - as.numeric(logLik(lm_fit))) < 1e-8,
          abs(lm_reml$sigma - summary(lm_fit)$sigma) < 1e-10)
add(lm_reml)
add(lm_ml)

# ---------------------------------------------------------------------------
# consistency checks between equivalent parametrisations
# ---------------------------------------------------------------------------
stopifnot(abs(cases$twoterms_reml$logLik - cases$uncorr_reml$logLik) < 1e-6,
          abs(cases$catslope_reml$logLik - cases$catslope0_reml$logLik) < 1e-5,
          !any(vapply(cases[setdiff(names(cases), c("singular_reml", "lm_reml", "lm_ml"))],
                      function(cs) isTRUE(cs$singular), logical(1))))

# ---------------------------------------------------------------------------
# write JSON
# ---------------------------------------------------------------------------
json <- toJSON(cases, auto_unbox = TRUE, digits = NA, na = "null",
               dataframe = "rows", pretty = TRUE)
writeLines(json, out_json)
cat(sprintf("wrote %d cases to %s\n", length(cases), out_json))
for (cs in cases) {
  cat(sprintf("  %-16s %-40s logLik %.6f singular %s%s\n", cs$id, cs$formula, cs$logLik,
              format(cs$singular),
              if (length(cs$lme4_messages)) paste0("  [", paste(cs$lme4_messages, collapse = " | "), "]") else ""))
}
