"""Commands for using what the pipeline trained, outside DVC: translating one's own images."""
