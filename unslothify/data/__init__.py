"""The data: reading and checking a user's file (items, sources), tokens and the answer mask (tokens), the
prepare stage (prepare), the knowledge probes built from the items (probes) and augmentation (augment/)."""
