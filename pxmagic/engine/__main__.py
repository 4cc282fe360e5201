"""``python -m pxmagic.engine -f CONNECTION_FILE``: start one engine kernel."""
from ipykernel.kernelapp import IPKernelApp

from .kernel import EngineKernel

if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=EngineKernel)
