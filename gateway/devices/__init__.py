"""The evaluators as the gateway knows them: registry, keys, pairing, invitations, commands, health."""
