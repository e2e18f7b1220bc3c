"""``pwbus dispatch``: Max Backup on the gateway while Octopus charges the car cheaply."""
