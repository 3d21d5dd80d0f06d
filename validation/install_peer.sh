#!/usr/bin/env bash
# Installs the brms peer for validation/peer_brms.py from Debian's packages. rstan finds
# Boost through system.file("include", package = "BH"); Debian's r-cran-bh leaves that
# folder out (the headers come from libboost-dev), so it is linked to /usr/include.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq r-base-core r-cran-brms r-cran-bh libboost-dev >/dev/null
bh=$(Rscript -e 'cat(find.package("BH"))')
[ -e "$bh/include" ] || ln -s /usr/include "$bh/include"
Rscript -e 'stopifnot(nzchar(system.file("include", "boost", package = "BH"))); cat("BH include:", system.file("include", package = "BH"), "\n")'
