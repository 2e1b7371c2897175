"""kdcore: knowledge distillation on CIFAR-10, fast on a CPU and ready for a GPU.

The package is the engine behind both the `python -m kdcore` command line and the Streamlit
dashboard. Nothing here imports Streamlit.
"""

__version__ = "0.1.0"
