# Peer fit with brms (Stan) of the binomial random-intercept model used by hlh-meta.
# Usage: Rscript validation/peer_brms.R INPUT.csv OUTPUT.csv SEED
# INPUT has columns study, events, total. Priors match hlh-meta's defaults:
# intercept ~ Normal(0, 1.5) on the logit scale, between-study SD ~ HalfNormal(1).
suppressPackageStartupMessages(library(brms))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
fit <- brm(events | trials(total) ~ 0 + Intercept + (1 | study), data = d, family = binomial(),
           prior = c(prior(normal(0, 1.5), class = "b", coef = "Intercept"),
                     prior(normal(0, 1), class = "sd")),
           chains = 4, iter = 4000, warmup = 1000, seed = as.integer(args[3]), refresh = 0,
           control = list(adapt_delta = 0.95))
draws <- as_draws_df(fit)
mu <- draws$b_Intercept
tau <- draws[["sd_study__Intercept"]]
q <- function(x) c(mean(x), sd(x), quantile(x, c(0.025, 0.5, 0.975)))
out <- rbind(mu = q(mu), tau = q(tau))
colnames(out) <- c("mean", "sd", "q2.5", "q50", "q97.5")
write.csv(out, args[2])
