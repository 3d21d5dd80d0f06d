// The binomial mixture meta-regression with exchangeable levels and unknown shares, written
// out independently of hlh-meta's PyMC graph (validation/peer_stan.py runs it).
//
// events_r ~ Binomial(n_r, p_r),
// p_r = sum_c w_rc inv_logit(m + sum_g e_g[c_g] + tau z_s[r]),
// w_rc = prod_g share_r(g, c_g): a row's share of the combination c of one level per group.
// m ~ N(0, mu_sd); for each group its level effects e_g = raw_g - mean(raw_g),
// raw_g iid N(0, beta_sd / sqrt(2)) (the sum-to-zero normal); tau ~ HalfNormal(tau_sd).
// An unknown composition is sum_p w_p t_p, t_p flat Dirichlet over the levels part p allows,
// drawn as normalised iid Exponential(1) variables (the Dirichlet(1, ..., 1) construction).
// mu = m + the reference levels' effects, beta = a level's effect - its reference's.
data {
  int<lower=1> R;                         // rows (strata)
  int<lower=1> S;                         // studies
  int<lower=1> G;                         // composition groups
  int<lower=1> L;                         // levels of all groups together
  int<lower=1> level_start[G];            // first level of each group (its reference)
  int<lower=1> level_len[G];
  int<lower=1> C;                         // combinations of one level per group
  int<lower=1> combo[C, G];               // each combination's level (index into 1..L) per group
  int<lower=0> events[R];
  int<lower=1> total[R];
  int<lower=1, upper=S> study[R];
  matrix<lower=0, upper=1>[R, L] known;   // known shares (0 for a group whose shares are unknown)
  int<lower=0> U;                         // unknown compositions
  int<lower=0> row_unit[R, G];            // a row's unknown of a group (0: known)
  int<lower=0> P;                         // parts of the unknowns
  int<lower=1> part_unit[P];
  vector<lower=0, upper=1>[P] part_weight;
  int<lower=1> part_start[P];             // each part's slots in slot_level
  int<lower=1> part_len[P];
  int<lower=0> N_slot;
  int<lower=1, upper=L> slot_level[N_slot];
  int<lower=0> J;                         // non-reference levels (design columns), in design order
  int<lower=1, upper=L> column_level[J];
  int<lower=1, upper=L> column_reference[J];
  real<lower=0> mu_sd;
  real<lower=0> beta_sd;
  real<lower=0> tau_sd;
}
parameters {
  real m;
  vector[L] raw;
  real<lower=0> tau;
  vector[S] z;
  vector<lower=0>[N_slot] gam;
}
transformed parameters {
  vector[L] e;
  matrix[R, L] share = known;
  vector[R] p;
  for (g in 1:G) {
    int a = level_start[g];
    int b = level_start[g] + level_len[g] - 1;
    e[a:b] = raw[a:b] - mean(raw[a:b]);
  }
  {
    matrix[U, L] unit_share = rep_matrix(0, U, L);
    for (q in 1:P) {
      int a = part_start[q];
      int b = part_start[q] + part_len[q] - 1;
      real tot = sum(gam[a:b]);
      for (i in a:b)
        unit_share[part_unit[q], slot_level[i]] += part_weight[q] * gam[i] / tot;
    }
    for (r in 1:R)
      for (g in 1:G)
        if (row_unit[r, g] > 0)
          share[r] += unit_share[row_unit[r, g]];
  }
  for (r in 1:R) {
    real acc = 0;
    for (c in 1:C) {
      real w = 1;
      real eta = m + tau * z[study[r]];
      for (g in 1:G) {
        w *= share[r, combo[c, g]];
        eta += e[combo[c, g]];
      }
      acc += w * inv_logit(eta);
    }
    p[r] = acc;
  }
}
model {
  m ~ normal(0, mu_sd);
  raw ~ normal(0, beta_sd / sqrt(2));
  tau ~ normal(0, tau_sd);
  z ~ normal(0, 1);
  gam ~ exponential(1);
  events ~ binomial(total, p);
}
generated quantities {
  real mu = m;
  vector[J] beta;
  for (g in 1:G)
    mu += e[level_start[g]];
  for (j in 1:J)
    beta[j] = e[column_level[j]] - e[column_reference[j]];
}
