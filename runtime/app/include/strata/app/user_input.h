// What strata-run reads from its user and says back: the one number parser of every numeric option,
// TOML value and environment variable ("4096", "1e6", "1.5e6", "32k", "2M", "16Gi"), the "did you
// mean" suggestion for a misspelt name, and the message shown for an error.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/status.h"

namespace strata::app {

// A number as a user writes it: a decimal (sign, digits, optional fraction, optional exponent:
// "4096", "0.25", "1e6", "1.5E6") with an optional suffix: k or K (x 1e3), M (x 1e6), G (x 1e9),
// T (x 1e12), or binary Ki (x 2^10), Mi (x 2^20), Gi (x 2^30), Ti (x 2^40). No spaces, no digit
// separators. Each returns an empty string on success, else what is wrong with the text ("is not a
// number", "must be a whole number", "must be non-negative", "is out of range (max N)").
std::string parseNumber(std::string_view text, double* out);
// The same, for a whole number in [0, max] ("1e6", "32Ki", "2M"; not "1.5" nor "1e-3"). Exact
// for every integer up to max written without fraction or exponent.
std::string parseWholeNumber(std::string_view text, std::uint64_t max, std::uint64_t* out);

// The same, as a Status naming where the text came from: kInvalidArgument
// "<what>='<text>' <problem> (numbers: 4096, 1e6, 32k, 16Gi)".
Result<std::uint64_t> parseWholeNumber(std::string_view what, std::string_view text,
                                       std::uint64_t max);

// Edit distance (insertions, deletions, substitutions, adjacent transpositions) between a and b.
std::size_t editDistance(std::string_view a, std::string_view b);

// The name of `names` closest to `given` when it is close enough to be a likely misspelling
// (at most a third of its length, and at most 3, edits away); empty otherwise.
std::string closestName(std::string_view given, const std::vector<std::string>& names);

// " (did you mean 'x'?)" for closestName's answer, or "" when there is none.
std::string didYouMean(std::string_view given, const std::vector<std::string>& names);

// The message to show a user for a failed status: an internal error (a bug) as it is, with its
// source locations; any other without the " (file.cpp:123)" locations that STRATA_ERROR adds
// (those go to the debug log).
std::string userMessage(const Status& status);

}  // namespace strata::app
