"""Small shared pieces with no domain: clock, durations, zones, single flight, background
loops, rate limits, metrics (read by all; imports nothing else of fbproxy)."""
