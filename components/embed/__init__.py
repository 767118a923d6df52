"""The embed stage: predictions, scores, embeddings and image features of a data set's rows."""
