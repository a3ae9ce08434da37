"""The one predictor (Segmenter) and what makes it fast: BatchNorm folding, CUDA graphs, ONNX export, ONNX Runtime,
int8, the benchmark.
"""
