-- The task history has a database of its own beside the application's.
CREATE DATABASE fleetops_history OWNER fleetops;
