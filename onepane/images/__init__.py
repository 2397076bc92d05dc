"""Images: app images for the process-based data centers (and, later, disk images and OVF)."""
