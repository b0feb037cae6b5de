//! `secure_model!`: declare a network once, have its shapes checked at compile time, and get a typed model whose
//! graph is built through the `cryptgpu-dsl` [`Builder`](cryptgpu_dsl::Builder).
//!
//! Use it through the facade, `cryptgpu::secure_model!`; the generated code refers to `::cryptgpu::dsl::…`, so
//! the crate that invokes it depends on `cryptgpu`.
//!
//! # Example
//!
//! ```ignore
//! cryptgpu::secure_model! {
//!     /// LeNet for MNIST.
//!     pub struct LeNet(input = [1, 28, 28]) {
//!         conv1: Conv2d(1 => 20, kernel = 5), Relu, AvgPool(2),
//!         conv2: Conv2d(20 => 50, kernel = 5), Relu, AvgPool(2),
//!         Flatten,
//!         fc1: Linear(800 => 500), Relu,
//!         fc2: Linear(500 => 10),
//!     }
//!
//!     /// A torchvision (v1.5) bottleneck: the stride sits on the 3×3 conv; the projection appears only when the
//!     /// shape changes.
//!     block Bottleneck(cin, mid, cout, stride) {
//!         residual {
//!             conv1: Conv2d(cin => mid, kernel = 1, bias = false), bn1: BatchNorm2d(mid), relu1: Relu,
//!             conv2: Conv2d(mid => mid, kernel = 3, stride = stride, padding = 1, bias = false),
//!             bn2: BatchNorm2d(mid), relu2: Relu,
//!             conv3: Conv2d(mid => cout, kernel = 1, bias = false), bn3: BatchNorm2d(cout),
//!         } shortcut if stride != 1 || cin != cout {
//!             downsample: { Conv2d(cin => cout, kernel = 1, stride = stride, bias = false), BatchNorm2d(cout) },
//!         } then {
//!             relu: Relu,
//!         }
//!     }
//!
//!     /// ResNet-152 for ImageNet.
//!     pub struct ResNet152(input = [3, 224, 224]) {
//!         conv1: Conv2d(3 => 64, kernel = 7, stride = 2, padding = 3, bias = false), bn1: BatchNorm2d(64),
//!         relu: Relu, maxpool: MaxPool(3, stride = 2, padding = 1),
//!         layer1: { Bottleneck(64, 64, 256, 1), Bottleneck(256, 64, 256, 1) * 2 },
//!         layer2: { Bottleneck(256, 128, 512, 2), Bottleneck(512, 128, 512, 1) * 7 },
//!         layer3: { Bottleneck(512, 256, 1024, 2), Bottleneck(1024, 256, 1024, 1) * 35 },
//!         layer4: { Bottleneck(1024, 512, 2048, 2), Bottleneck(2048, 512, 2048, 1) * 2 },
//!         avgpool: GlobalAvgPool, flatten: Flatten, fc: Linear(2048 => 1000),
//!     }
//! }
//!
//! let graph = LeNet::graph();                 // a cryptgpu::dsl::Graph, names `conv1.weight`, `fc2.bias`, …
//! assert_eq!(LeNet::INPUT, [1, 28, 28]);      // per-sample input shape
//! assert_eq!(LeNet::OUTPUT, &[10]);           // per-sample output shape, inferred at compile time
//! assert_eq!(ResNet152::graph().parameters()[0].name, "conv1.weight");
//! ```
//!
//! # Syntax
//!
//! An invocation holds any number of **models** and **blocks**, in any order; blocks are visible to every model
//! of the same invocation.
//!
//! * **Model**: `[attributes] [vis] struct Name(input = [C, H, W]) { entries }`. Attributes (doc comments,
//!   derives) stay on the generated unit struct `Name`, which gets `pub const INPUT: [usize; N]`,
//!   `pub const OUTPUT: &[usize]` and `pub fn graph() -> cryptgpu::dsl::Graph` (graph name `"Name"`).
//! * **Entry**: `[name:] element [* count]`, comma separated. A named entry is that PyTorch sub-module
//!   (`conv1` → `conv1.weight`); an anonymous one is named by its index in the enclosing sequence, like
//!   `nn.Sequential` (`features.0.weight`). `* count` repeats an anonymous entry; names must be unique per scope.
//! * **Layers** (arguments are expressions: literals, block parameters, `+ - * / %`; `k` or `(kh, kw)` for sizes):
//!   - `Conv2d(in => out, kernel = k, stride = 1, padding = 0, bias = true)`;
//!   - `Linear(in => out, bias = true)`;
//!   - `Relu` (or `ReLU`), `Flatten`, `GlobalAvgPool` (`[C, H, W]` → `[C, 1, 1]`);
//!   - `AvgPool(k, stride = k, padding = 0)`, `MaxPool(…)` (also spelled `AvgPool2d`, `MaxPool2d`);
//!   - `BatchNorm2d(channels, eps = 1e-5, momentum = 0.1)`, `Dropout(p)`.
//! * **Sequence**: `name: { entries }` (PyTorch `nn.Sequential` or a sub-module).
//! * **Residual**: `residual { main } [shortcut [if cond] { … }] [then { post }]` computes
//!   `post(main(x) + shortcut(x))`; an absent (or false-conditioned) shortcut is the identity. Main, shortcut and
//!   post children share one naming scope (`layer1.0.conv1`, `layer1.0.downsample.0`, `layer1.0.relu`).
//! * **Block**: `block Name(p1, p2, …) { entries }` defines a parameterised block, called like a layer with
//!   positional arguments: `Name(64, 128, 2)`. If the body is a single anonymous entry (typically one
//!   `residual`), a call *is* that entry under the call's name; otherwise a call is a sequence of the body.
//!
//! # Compile-time checking
//!
//! The macro lowers the declaration to `cryptgpu-dsl` nodes and runs the dsl's own shape inference
//! (`Graph::new`) while expanding, so the shape rules exist once. A failure becomes a `compile_error!` spanned at
//! the offending entry, carrying the dsl's message (layer name, expected and found shapes), with a note naming
//! the block instance when the layer sits inside a block. Unknown layers, wrong arity, unknown or mistyped
//! arguments are spanned errors too. In every case the user's struct and its items are still emitted, so a typo
//! produces exactly one error and no cascade.

#![warn(missing_docs)]

mod eval;
mod model;
mod parse;

use parse::{Invocation, Item};
use proc_macro::TokenStream;
use quote::quote;
use std::collections::HashMap;

/// Declares one or more models (and the blocks they use) and checks their shapes at compile time.
///
/// See the [crate documentation](crate) for the syntax and a complete example.
#[proc_macro]
pub fn secure_model(input: TokenStream) -> TokenStream {
    let invocation = match syn::parse::<Invocation>(input) {
        Ok(inv) => inv,
        Err(e) => return e.to_compile_error().into(),
    };
    let dsl = quote!(::cryptgpu::dsl);
    let mut out = proc_macro2::TokenStream::new();
    let mut blocks = HashMap::new();
    for item in &invocation.items {
        if let Item::Block(b) = item {
            if let Err(e) = &b.body {
                out.extend(e.to_compile_error());
            }
            if blocks.insert(b.name.to_string(), b).is_some() {
                let n = &b.name;
                out.extend(syn::Error::new_spanned(n, format!("block `{n}` is defined twice")).to_compile_error());
            }
        }
    }
    for item in &invocation.items {
        if let Item::Model(m) = item {
            out.extend(model::expand(m, &blocks, &dsl));
        }
    }
    out.into()
}
