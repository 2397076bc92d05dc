"""Traffic: health checks, the traffic manager (who serves), data planes and DNS."""
