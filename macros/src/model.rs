//! Lowering a parsed model to the dsl's node tree, checking it with the dsl's own shape inference, and
//! generating the struct and its `graph()` builder code.

use crate::eval::{eval, Env, Value};
use crate::parse::{Args, BlockDef, Elem, Entry, ModelDef, Seq};
use cryptgpu_dsl::{BatchNorm2d, Conv2d, DslError, Graph, Layer, Linear, Node, Pool2d};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use std::collections::{HashMap, HashSet};
use syn::{Expr, Ident};

/// Prefix of the local names that tag every node with its origin during error location.
const TAG: &str = "__secure_model_node";
/// Deepest nesting of block calls (guards against a block that calls itself).
const MAX_DEPTH: usize = 64;

/// The layer names the macro knows, for messages.
const LAYERS: &str = "Conv2d, Linear, Relu, AvgPool, MaxPool, GlobalAvgPool, BatchNorm2d, Flatten, Dropout";

/// A lowered node: the dsl node shape plus the index of the source entry it came from.
enum Low {
    Layer { name: String, id: usize, layer: Layer },
    Seq { name: String, id: usize, children: Vec<Low> },
    Residual { name: String, id: usize, main: Vec<Low>, shortcut: Vec<Low>, post: Vec<Low> },
}

impl Low {
    fn rename(&mut self, new: String) {
        match self {
            Low::Layer { name, .. } | Low::Seq { name, .. } | Low::Residual { name, .. } => *name = new,
        }
    }

    /// The dsl node; with `tagged`, every local name is replaced by the origin tag.
    fn to_node(&self, tagged: bool) -> Node {
        let name = |n: &String, id: &usize| if tagged { format!("{TAG}{id}") } else { n.clone() };
        let all = |v: &[Low]| v.iter().map(|x| x.to_node(tagged)).collect();
        match self {
            Low::Layer { name: n, id, layer } => Node::Layer { name: name(n, id), layer: layer.clone() },
            Low::Seq { name: n, id, children } => Node::Sequential { name: name(n, id), children: all(children) },
            Low::Residual { name: n, id, main, shortcut, post } => {
                Node::Residual { name: name(n, id), main: all(main), shortcut: all(shortcut), post: all(post) }
            }
        }
    }
}

/// Where a lowered node came from: the entry's tokens and the block calls it sits in.
struct Origin {
    tokens: TokenStream,
    context: Vec<String>,
}

/// Lowering state for one model.
struct Lowerer<'a> {
    blocks: &'a HashMap<String, &'a BlockDef>,
    origins: Vec<Origin>,
    context: Vec<String>,
}

impl Lowerer<'_> {
    fn origin(&mut self, tokens: &TokenStream) -> usize {
        self.origins.push(Origin { tokens: tokens.clone(), context: self.context.clone() });
        self.origins.len() - 1
    }

    /// Lowers a sequence whose explicit names share a scope with `scope`.
    fn seq(&mut self, seq: &Seq, env: &Env, scope: &mut HashSet<String>) -> syn::Result<Vec<Low>> {
        let mut out = Vec::new();
        for entry in &seq.entries {
            if let Some(name) = &entry.name {
                if !scope.insert(name.to_string()) {
                    return Err(syn::Error::new_spanned(name, format!("duplicate layer name `{name}` in this scope")));
                }
            }
            out.extend(self.entry(entry, env)?);
        }
        Ok(out)
    }

    fn entry(&mut self, entry: &Entry, env: &Env) -> syn::Result<Vec<Low>> {
        let count = match &entry.repeat {
            None => 1,
            Some(e) => {
                if let Some(name) = &entry.name {
                    return Err(syn::Error::new_spanned(
                        name,
                        format!(
                            "the named entry `{name}` cannot be repeated: repetitions are named by their index, \
                                 so drop the name or wrap them as `{name}: {{ … * n }}`"
                        ),
                    ));
                }
                usize_of(e, eval(e, env)?, "a repetition count")?
            }
        };
        let name = entry.name.as_ref().map(Ident::to_string).unwrap_or_default();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.elem(entry, name.clone(), env)?);
        }
        Ok(out)
    }

    fn elem(&mut self, entry: &Entry, name: String, env: &Env) -> syn::Result<Low> {
        match &entry.elem {
            Elem::Seq(seq) => {
                let id = self.origin(&entry.tokens);
                let children = self.seq(seq, env, &mut HashSet::new())?;
                Ok(Low::Seq { name, id, children })
            }
            Elem::Residual { main, shortcut, post } => {
                let id = self.origin(&entry.tokens);
                let mut scope = HashSet::new();
                let main = self.seq(main, env, &mut scope)?;
                let shortcut = match shortcut {
                    Some((cond, seq)) => {
                        let take = match cond {
                            None => true,
                            Some(c) => match eval(c, env)? {
                                Value::Bool(b) => b,
                                v => return Err(syn::Error::new_spanned(c, format!("expected a boolean, found {v}"))),
                            },
                        };
                        if take {
                            self.seq(seq, env, &mut scope)?
                        } else {
                            Vec::new()
                        }
                    }
                    None => Vec::new(),
                };
                let post = match post {
                    Some(seq) => self.seq(seq, env, &mut scope)?,
                    None => Vec::new(),
                };
                Ok(Low::Residual { name, id, main, shortcut, post })
            }
            Elem::Call { ident, args } => match self.blocks.get(&ident.to_string()) {
                Some(block) => self.call(entry, ident, args.as_ref(), block, name, env),
                None => {
                    let layer = make_layer(ident, args.as_ref(), env, self.blocks)?;
                    let id = self.origin(&entry.tokens);
                    Ok(Low::Layer { name, id, layer })
                }
            },
        }
    }

    fn call(
        &mut self,
        entry: &Entry,
        ident: &Ident,
        args: Option<&Args>,
        block: &BlockDef,
        name: String,
        env: &Env,
    ) -> syn::Result<Low> {
        let empty = Args { positional: Vec::new(), named: Vec::new(), tokens: quote!(#ident) };
        let args = args.unwrap_or(&empty);
        if let Some((n, _)) = args.named.first() {
            return Err(syn::Error::new_spanned(n, format!("block `{ident}` takes positional arguments only")));
        }
        if args.positional.len() != block.params.len() {
            let params: Vec<_> = block.params.iter().map(Ident::to_string).collect();
            return Err(syn::Error::new_spanned(
                &args.tokens,
                format!(
                    "block `{ident}` takes {} argument(s) ({}), found {}",
                    params.len(),
                    params.join(", "),
                    args.positional.len()
                ),
            ));
        }
        if self.context.len() >= MAX_DEPTH {
            return Err(syn::Error::new_spanned(ident, format!("block calls nest deeper than {MAX_DEPTH}")));
        }
        let values = args.positional.iter().map(|e| eval(e, env)).collect::<syn::Result<Vec<_>>>()?;
        let shown: Vec<_> = values.iter().map(Value::to_string).collect();
        let inner: Env = block.params.iter().map(Ident::to_string).zip(values).collect();
        let body = match &block.body {
            Ok(body) => body,
            Err(_) => return Err(syn::Error::new_spanned(ident, format!("block `{ident}` has a syntax error"))),
        };
        let id = self.origin(&entry.tokens);
        self.context.push(format!("{ident}({})", shown.join(", ")));
        let children = self.seq(body, &inner, &mut HashSet::new());
        self.context.pop();
        let mut children = children?;
        let single = body.entries.len() == 1 && body.entries[0].name.is_none() && body.entries[0].repeat.is_none();
        if single {
            let mut node = children.pop().expect("one entry lowers to one node");
            node.rename(name);
            Ok(node)
        } else {
            Ok(Low::Seq { name, id, children })
        }
    }
}

fn usize_of(e: &Expr, v: Value, what: &str) -> syn::Result<usize> {
    match v {
        Value::Int(i) if i >= 0 => Ok(i as usize),
        v => Err(syn::Error::new_spanned(e, format!("expected {what} (a non-negative integer), found {v}"))),
    }
}

fn pair_of(e: &Expr, v: Value, what: &str) -> syn::Result<(usize, usize)> {
    match v {
        Value::Tuple(t) if t.len() == 2 => Ok((usize_of(e, t[0].clone(), what)?, usize_of(e, t[1].clone(), what)?)),
        v => {
            let n = usize_of(e, v, what)?;
            Ok((n, n))
        }
    }
}

/// Reads the arguments of one layer against its signature.
struct LayerArgs<'a> {
    positional: Vec<(&'a Expr, Value)>,
    named: HashMap<String, (&'a Expr, Value)>,
}

impl<'a> LayerArgs<'a> {
    fn new(
        ident: &Ident,
        args: Option<&'a Args>,
        env: &Env,
        positional: usize,
        names: &[&str],
        usage: &str,
    ) -> syn::Result<Self> {
        let found = args.map_or(0, |a| a.positional.len());
        if found != positional {
            let at = args.map_or_else(|| quote!(#ident), |a| a.tokens.clone());
            return Err(syn::Error::new_spanned(
                at,
                format!("`{ident}` takes {positional} positional argument(s), found {found}; usage: {usage}"),
            ));
        }
        let mut out = LayerArgs { positional: Vec::new(), named: HashMap::new() };
        if let Some(a) = args {
            for e in &a.positional {
                out.positional.push((e, eval(e, env)?));
            }
            for (n, e) in &a.named {
                let key = n.to_string();
                if !names.contains(&key.as_str()) {
                    let expected = if names.is_empty() {
                        "it takes none".to_string()
                    } else {
                        format!("expected {}", names.join(", "))
                    };
                    return Err(syn::Error::new_spanned(n, format!("`{ident}` has no argument `{n}`; {expected}")));
                }
                if out.named.insert(key, (e, eval(e, env)?)).is_some() {
                    return Err(syn::Error::new_spanned(n, format!("argument `{n}` given twice")));
                }
            }
        }
        Ok(out)
    }

    fn pos(&self, i: usize, what: &str) -> syn::Result<usize> {
        let (e, v) = &self.positional[i];
        usize_of(e, v.clone(), what)
    }

    fn pair(
        &self,
        name: &str,
        default: Option<(usize, usize)>,
        ident: &Ident,
        usage: &str,
    ) -> syn::Result<(usize, usize)> {
        match (self.named.get(name), default) {
            (Some((e, v)), _) => pair_of(e, v.clone(), name),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(syn::Error::new_spanned(
                ident,
                format!("`{ident}` needs the argument `{name} = …`; usage: {usage}"),
            )),
        }
    }

    fn bool(&self, name: &str, default: bool) -> syn::Result<bool> {
        match self.named.get(name) {
            Some((_, Value::Bool(b))) => Ok(*b),
            Some((e, v)) => Err(syn::Error::new_spanned(e, format!("`{name}` must be true or false, found {v}"))),
            None => Ok(default),
        }
    }

    fn float(&self, e: &Expr, v: &Value, what: &str) -> syn::Result<f64> {
        match v {
            Value::Float(x) => Ok(*x),
            Value::Int(i) => Ok(*i as f64),
            v => Err(syn::Error::new_spanned(e, format!("`{what}` must be a number, found {v}"))),
        }
    }

    fn named_float(&self, name: &str, default: f64) -> syn::Result<f64> {
        match self.named.get(name) {
            Some((e, v)) => self.float(e, v, name),
            None => Ok(default),
        }
    }
}

/// Builds the dsl layer for a call of a built-in layer, or a spanned error.
fn make_layer(
    ident: &Ident,
    args: Option<&Args>,
    env: &Env,
    blocks: &HashMap<String, &BlockDef>,
) -> syn::Result<Layer> {
    let kind = ident.to_string();
    let read = |n, names: &[&str], usage: &str| LayerArgs::new(ident, args, env, n, names, usage);
    Ok(match kind.as_str() {
        "Conv2d" => {
            let usage = "Conv2d(in => out, kernel = k, stride = 1, padding = 0, bias = true)";
            let a = read(2, &["kernel", "stride", "padding", "bias"], usage)?;
            Layer::Conv2d(Conv2d {
                in_channels: a.pos(0, "input channels")?,
                out_channels: a.pos(1, "output channels")?,
                kernel: a.pair("kernel", None, ident, usage)?,
                stride: a.pair("stride", Some((1, 1)), ident, usage)?,
                padding: a.pair("padding", Some((0, 0)), ident, usage)?,
                bias: a.bool("bias", true)?,
            })
        }
        "Linear" => {
            let a = read(2, &["bias"], "Linear(in => out, bias = true)")?;
            Layer::Linear(Linear {
                in_features: a.pos(0, "input features")?,
                out_features: a.pos(1, "output features")?,
                bias: a.bool("bias", true)?,
            })
        }
        "Relu" | "ReLU" => {
            read(0, &[], "Relu")?;
            Layer::Relu
        }
        "Flatten" => {
            read(0, &[], "Flatten")?;
            Layer::Flatten
        }
        "GlobalAvgPool" => {
            read(0, &[], "GlobalAvgPool")?;
            Layer::GlobalAvgPool
        }
        "AvgPool" | "AvgPool2d" | "MaxPool" | "MaxPool2d" => {
            let usage = format!("{kind}(k, stride = k, padding = 0)");
            let a = read(1, &["stride", "padding"], &usage)?;
            let (e, v) = &a.positional[0];
            let kernel = pair_of(e, v.clone(), "kernel")?;
            let pool = Pool2d {
                kernel,
                stride: a.pair("stride", Some(kernel), ident, &usage)?,
                padding: a.pair("padding", Some((0, 0)), ident, &usage)?,
            };
            if kind.starts_with("Avg") {
                Layer::AvgPool2d(pool)
            } else {
                Layer::MaxPool2d(pool)
            }
        }
        "BatchNorm2d" => {
            let a = read(1, &["eps", "momentum"], "BatchNorm2d(channels, eps = 1e-5, momentum = 0.1)")?;
            let d = BatchNorm2d::new(0);
            Layer::BatchNorm2d(BatchNorm2d {
                channels: a.pos(0, "channels")?,
                eps: a.named_float("eps", d.eps)?,
                momentum: a.named_float("momentum", d.momentum)?,
            })
        }
        "Dropout" => {
            let a = read(1, &[], "Dropout(p)")?;
            let (e, v) = &a.positional[0];
            Layer::Dropout { p: a.float(e, v, "p")? }
        }
        _ => {
            let mut known: Vec<&str> = LAYERS.split(", ").chain(blocks.keys().map(String::as_str)).collect();
            known.sort_by_key(|k| distance(&kind.to_lowercase(), &k.to_lowercase()));
            let hint = match known.first() {
                Some(best) if distance(&kind.to_lowercase(), &best.to_lowercase()) <= 2 => {
                    format!(" (did you mean `{best}`?)")
                }
                _ => String::new(),
            };
            let mut blocks: Vec<&str> = blocks.keys().map(String::as_str).collect();
            blocks.sort_unstable();
            let blocks = if blocks.is_empty() {
                String::new()
            } else {
                format!("; blocks of this macro: {}", blocks.join(", "))
            };
            return Err(syn::Error::new_spanned(
                ident,
                format!("unknown layer `{kind}`{hint}; expected one of {LAYERS}{blocks}"),
            ));
        }
    })
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The origin index of the node an error of the tagged graph names.
fn tagged_origin(e: &DslError) -> Option<usize> {
    let full = match e {
        DslError::ShapeMismatch { layer, .. } | DslError::InvalidLayer { layer, .. } => layer,
        DslError::ResidualMismatch { block, .. } => block,
        _ => return None,
    };
    full.rsplit('.').next()?.strip_prefix(TAG)?.parse().ok()
}

/// Expands one model: the struct with its docs and, when it checks, `INPUT`, `OUTPUT` and `graph()`; otherwise
/// the struct with the same items (so uses of it raise no further errors) and the spanned error.
pub fn expand(model: &ModelDef, blocks: &HashMap<String, &BlockDef>, dsl: &TokenStream) -> TokenStream {
    let ModelDef { attrs, vis, name, .. } = model;
    let input: Vec<syn::Result<usize>> =
        model.input.iter().map(|e| eval(e, &Env::new()).and_then(|v| usize_of(e, v, "an input extent"))).collect();
    let checked = check(model, blocks, &input);
    let dims: Vec<usize> = input.iter().map(|r| *r.as_ref().unwrap_or(&0)).collect();
    let n = dims.len();
    let model_name = name.to_string();
    let (output, body, error) = match checked {
        Ok((graph, low)) => {
            let b = format_ident!("b");
            let calls = gen_seq(&low, &b, dsl);
            let body = quote! {
                let mut #b = #dsl::Builder::new();
                #calls
                #b.build(#model_name, &Self::INPUT).expect("shape-checked by secure_model! at compile time")
            };
            (graph.output_shape().to_vec(), body, TokenStream::new())
        }
        Err(e) => {
            let body = quote! { ::core::panic!("secure_model!: model `{}` failed to compile", #model_name) };
            (Vec::new(), body, e.to_compile_error())
        }
    };
    let input_doc = format!(" The per-sample input shape {dims:?} (the batch dimension is implicit).");
    let output_doc = format!(" The per-sample output shape {output:?}, inferred at compile time.");
    let graph_doc = format!(" Builds the shape-checked graph of `{model_name}` through the dsl `Builder`.");
    quote! {
        #error
        #(#attrs)*
        #vis struct #name;
        impl #name {
            #[doc = #input_doc]
            pub const INPUT: [usize; #n] = [#(#dims),*];
            #[doc = #output_doc]
            pub const OUTPUT: &'static [usize] = &[#(#output),*];
            #[doc = #graph_doc]
            pub fn graph() -> #dsl::Graph {
                #body
            }
        }
    }
}

fn check(
    model: &ModelDef,
    blocks: &HashMap<String, &BlockDef>,
    input: &[syn::Result<usize>],
) -> syn::Result<(Graph, Vec<Low>)> {
    let dims = input.iter().cloned().collect::<syn::Result<Vec<usize>>>()?;
    let body = model.body.as_ref().map_err(Clone::clone)?;
    let mut l = Lowerer { blocks, origins: Vec::new(), context: Vec::new() };
    let low = l.seq(body, &Env::new(), &mut HashSet::new())?;
    let name = model.name.to_string();
    match Graph::new(&name, &dims, low.iter().map(|x| x.to_node(false)).collect()) {
        Ok(g) => Ok((g, low)),
        Err(e) => {
            let tagged = Graph::new(&name, &dims, low.iter().map(|x| x.to_node(true)).collect());
            let origin = tagged.err().as_ref().and_then(tagged_origin).and_then(|i| l.origins.get(i));
            let mut msg = e.to_string();
            let at = match origin {
                Some(o) => {
                    for c in o.context.iter().rev() {
                        msg.push_str(&format!(" (inside block `{c}`)"));
                    }
                    o.tokens.clone()
                }
                None if matches!(&e, DslError::ShapeMismatch { layer, .. } if layer.ends_with("(input)")) => {
                    model.input_tokens.clone()
                }
                None => {
                    let n = &model.name;
                    quote!(#n)
                }
            };
            Err(syn::Error::new_spanned(at, msg))
        }
    }
}

fn usize_lit(n: usize) -> Literal {
    Literal::usize_suffixed(n)
}

fn pair(p: (usize, usize)) -> TokenStream {
    let (a, b) = (usize_lit(p.0), usize_lit(p.1));
    quote!((#a, #b))
}

fn layer_tokens(layer: &Layer, dsl: &TokenStream) -> TokenStream {
    match layer {
        Layer::Conv2d(c) => {
            let (i, o) = (usize_lit(c.in_channels), usize_lit(c.out_channels));
            let (k, s, p, bias) = (pair(c.kernel), pair(c.stride), pair(c.padding), c.bias);
            quote!(#dsl::Layer::Conv2d(#dsl::Conv2d {
                in_channels: #i, out_channels: #o, kernel: #k, stride: #s, padding: #p, bias: #bias
            }))
        }
        Layer::Linear(l) => {
            let (i, o, bias) = (usize_lit(l.in_features), usize_lit(l.out_features), l.bias);
            quote!(#dsl::Layer::Linear(#dsl::Linear { in_features: #i, out_features: #o, bias: #bias }))
        }
        Layer::Relu => quote!(#dsl::Layer::Relu),
        Layer::AvgPool2d(p) | Layer::MaxPool2d(p) => {
            let (k, s, pad) = (pair(p.kernel), pair(p.stride), pair(p.padding));
            let variant = if matches!(layer, Layer::AvgPool2d(_)) { quote!(AvgPool2d) } else { quote!(MaxPool2d) };
            quote!(#dsl::Layer::#variant(#dsl::Pool2d { kernel: #k, stride: #s, padding: #pad }))
        }
        Layer::GlobalAvgPool => quote!(#dsl::Layer::GlobalAvgPool),
        Layer::BatchNorm2d(b) => {
            let (c, eps, m) = (usize_lit(b.channels), Literal::f64_suffixed(b.eps), Literal::f64_suffixed(b.momentum));
            quote!(#dsl::Layer::BatchNorm2d(#dsl::BatchNorm2d { channels: #c, eps: #eps, momentum: #m }))
        }
        Layer::Flatten => quote!(#dsl::Layer::Flatten),
        Layer::Dropout { p } => {
            let p = Literal::f64_suffixed(*p);
            quote!(#dsl::Layer::Dropout { p: #p })
        }
    }
}

fn closure(nodes: &[Low], dsl: &TokenStream) -> TokenStream {
    if nodes.is_empty() {
        return quote!(|_| {});
    }
    let b = format_ident!("b");
    let body = gen_seq(nodes, &b, dsl);
    quote!(|#b: &mut #dsl::Builder| { #body })
}

fn gen_seq(nodes: &[Low], b: &Ident, dsl: &TokenStream) -> TokenStream {
    nodes
        .iter()
        .map(|n| match n {
            Low::Layer { name, layer, .. } => {
                let layer = layer_tokens(layer, dsl);
                quote!(#b.layer(#name, #layer);)
            }
            Low::Seq { name, children, .. } => {
                let body = closure(children, dsl);
                quote!(#b.sequential(#name, #body);)
            }
            Low::Residual { name, main, shortcut, post, .. } => {
                let (m, s, p) = (closure(main, dsl), closure(shortcut, dsl), closure(post, dsl));
                quote!(#b.residual(#name, #m, #s, #p);)
            }
        })
        .collect()
}
