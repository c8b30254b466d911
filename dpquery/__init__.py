"""dpquery: a differential-privacy aggregate query service."""
