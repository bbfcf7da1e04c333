"""QA's room: queries on the store (`queries`), per-station statistics (`stats`), the static
report (`report`) and the command line's text tables (`text`). It reads the store and the drift
monitor; the web page, the command line and the use cases read it."""

from .queries import (MIN_REVIEWS, as_dict, confirmed_kind, flagged_count, parse_since, region_text, review_state,
                      reviewed_parts, reviewed_scores, too_few_reviews)

__all__ = ["MIN_REVIEWS", "as_dict", "confirmed_kind", "flagged_count", "parse_since", "region_text", "review_state",
           "reviewed_parts", "reviewed_scores", "too_few_reviews"]
