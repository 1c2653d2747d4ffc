"""Every file one stage hands another, each written and read by one module here: the prepared data's
manifest, the trained model (paths.model), the translations' info and latent codes, the reference
Inception features and the FCN-score segmenter. A stage never reads another stage's code, only
these files through these modules."""
