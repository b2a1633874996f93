"""babyhub: DPO for baby language models trained on CHILDES, published on the Hugging Face Hub."""

__version__ = "0.1.0"
