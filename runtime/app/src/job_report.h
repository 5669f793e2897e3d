// The job's report from the ranks' own: per-rank figures and host names gathered, then the ranks'
// figures summed into job totals. Private to runtime/app. Thread-safety: collective over the
// grid's world; every rank calls each function at the same point.
#pragma once

#include "run_worker.h"
#include "strata/app/report.h"
#include "strata/comm/grid.h"
#include "strata/core/status.h"

namespace strata::app {

// Appends every rank's own figures (this rank's report before aggregate()) to report->per_rank and
// every rank's host name to report->hosts (distinct names, in rank order), on every rank.
Status gatherPerRank(const comm::Grid& grid, const RankPlace& place, RunReport* report);

// Sums the ranks' reports into job totals on every rank. Request-level figures are counted once
// per replica (its rank 0 reports them), page and byte figures on every rank.
Status aggregate(const comm::Grid& grid, const RankPlace& place, RunReport* report);

}  // namespace strata::app
