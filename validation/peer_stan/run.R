# Rscript validation/peer_stan/run.R MODEL.stan DATA.R OUT.csv SEED DRAWS
# Samples the hand-written Stan model (4 chains, DRAWS draws after 1000 warm-up,
# adapt_delta 0.95) and writes the draws of mu, tau, beta[] and p[] to OUT.csv, with the
# sampler's divergences and the largest R-hat as attributes on stderr.
suppressPackageStartupMessages(library(rstan))
args <- commandArgs(trailingOnly = TRUE)
data <- read_rdump(args[2])
fit <- stan(file = args[1], data = data, chains = 4, cores = 1, iter = 1000 + as.integer(args[5]),
            warmup = 1000, seed = as.integer(args[4]), refresh = 0,
            control = list(adapt_delta = 0.95))
draws <- as.data.frame(as.matrix(fit, pars = c("mu", "tau", "beta", "p")))
write.csv(draws, args[3], row.names = FALSE)
sp <- get_sampler_params(fit, inc_warmup = FALSE)
rhat <- summary(fit, pars = c("mu", "tau", "beta", "p"))$summary[, "Rhat"]
message(sprintf("divergences %d; max Rhat %.4f", sum(sapply(sp, function(x) sum(x[, "divergent__"]))),
                max(rhat, na.rm = TRUE)))
