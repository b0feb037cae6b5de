//! The model description language of cryptgpu.
//!
//! This crate will own the layer types (Conv2d, Linear, ReLU, pooling, batch norm, residual blocks, …), shape
//! inference over a model graph, a run-time model builder, weights I/O (safetensors with PyTorch names) and the
//! plaintext f64 reference forward/backward that every private result is checked against. It is empty until the
//! model issue lands; the crate exists now so the workspace has its final shape.
