"""The suite's harness, shared by its tiers: wheels and archives to upload,
the images, the clients, and the two ways to run an appliance (a compose stack
on this host's engine, a systemd host with the installed .deb)."""
