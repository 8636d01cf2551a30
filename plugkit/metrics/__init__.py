"""How real the samples are: measures comparing synthetic with real data (plugkit eval)."""
