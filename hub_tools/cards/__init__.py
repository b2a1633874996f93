"""The cards: dataset and model cards rendered from the templates in `dataset_cards/` and `model_cards/` with
`DatasetCard`/`ModelCard` and typed card data."""
