"""Why it went dark: verdicts for outages (attributor, evidence, verdict) and daily reports (report, plot)."""
