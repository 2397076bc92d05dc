"""The inventory: locations, instances, volumes and networks, their operations and their sync."""
