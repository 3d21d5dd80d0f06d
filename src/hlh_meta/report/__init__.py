"""Results: tables, figures, the HTML report and their atomic writing."""
