"""Stage 3, distribute: signed bundles, policy sources (files, Redis) and the live holder."""
