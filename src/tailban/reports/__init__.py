"""Attack-statistics reports: one JSON-able dict rendered as text, self-contained HTML and CSV."""
