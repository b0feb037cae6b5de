//! The syntax tree of a `secure_model!` invocation and its parser.
//!
//! Bodies of models and blocks are parsed separately from their headers, so a syntax error inside a body is
//! reported while the header (and thus the user's struct) survives: one typo, one error.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{braced, bracketed, parenthesized, token, Attribute, Expr, Ident, Token, Visibility};

mod kw {
    syn::custom_keyword!(block);
    syn::custom_keyword!(input);
    syn::custom_keyword!(residual);
    syn::custom_keyword!(shortcut);
    syn::custom_keyword!(then);
}

/// Everything inside `secure_model! { … }`: models and blocks, in any order.
pub struct Invocation {
    /// The items, in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
pub enum Item {
    /// `block Name(params) { … }`.
    Block(BlockDef),
    /// `pub struct Name(input = [..]) { … }`.
    Model(ModelDef),
}

/// A reusable parameterised block.
pub struct BlockDef {
    /// Block name, used like a layer name.
    pub name: Ident,
    /// Integer (or boolean/float) parameters, bound positionally at each call.
    pub params: Vec<Ident>,
    /// The body, or its syntax error.
    pub body: syn::Result<Seq>,
}

/// A model declaration.
pub struct ModelDef {
    /// The user's attributes (doc comments, derives), kept on the generated struct.
    pub attrs: Vec<Attribute>,
    /// Visibility of the generated struct.
    pub vis: Visibility,
    /// Struct name, also the graph's name.
    pub name: Ident,
    /// Per-sample input shape expressions.
    pub input: Vec<Expr>,
    /// The `[..]` tokens of the input shape, for errors about the input itself.
    pub input_tokens: TokenStream,
    /// The body, or its syntax error.
    pub body: syn::Result<Seq>,
}

/// A comma-separated sequence of entries.
pub struct Seq {
    /// The entries, in order.
    pub entries: Vec<Entry>,
}

/// `[name:] element [* count]`.
pub struct Entry {
    /// Explicit local name (`conv1`); anonymous entries are named by their index, like `nn.Sequential`.
    pub name: Option<Ident>,
    /// What the entry is.
    pub elem: Elem,
    /// Repetition count expression.
    pub repeat: Option<Expr>,
    /// All tokens of the entry, for spanning errors at it.
    pub tokens: TokenStream,
}

/// The element of an entry.
pub enum Elem {
    /// A layer or a block call: `Conv2d(1 => 20, kernel = 5)`, `Relu`, `Bottleneck(64, 64, 256, 1)`.
    Call {
        /// Layer or block name.
        ident: Ident,
        /// Arguments, if parenthesised.
        args: Option<Args>,
    },
    /// A nested sequence `{ … }` (PyTorch `nn.Sequential`).
    Seq(Seq),
    /// `residual { main } [shortcut [if cond] { … }] [then { post }]`.
    Residual {
        /// Main branch.
        main: Seq,
        /// Optional condition and the shortcut branch.
        shortcut: Option<(Option<Expr>, Seq)>,
        /// Layers after the addition.
        post: Option<Seq>,
    },
}

/// Parenthesised arguments.
pub struct Args {
    /// Positional arguments; `a => b` contributes two.
    pub positional: Vec<Expr>,
    /// `name = value` arguments.
    pub named: Vec<(Ident, Expr)>,
    /// The `( … )` tokens, for arity errors.
    pub tokens: TokenStream,
}

impl Parse for Invocation {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut items = Vec::new();
        while !input.is_empty() {
            let attrs = input.call(Attribute::parse_outer)?;
            if input.peek(kw::block) {
                input.parse::<kw::block>()?;
                let name: Ident = input.parse()?;
                let content;
                parenthesized!(content in input);
                let params = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?.into_iter().collect();
                let content;
                braced!(content in input);
                let body: TokenStream = content.parse()?;
                items.push(Item::Block(BlockDef { name, params, body: syn::parse2(body) }));
            } else {
                let vis: Visibility = input.parse()?;
                input.parse::<Token![struct]>()?;
                let name: Ident = input.parse()?;
                let header;
                parenthesized!(header in input);
                header.parse::<kw::input>()?;
                header.parse::<Token![=]>()?;
                let input_tokens: TokenStream = header.fork().parse()?;
                let shape;
                bracketed!(shape in header);
                let dims = Punctuated::<Expr, Token![,]>::parse_terminated(&shape)?.into_iter().collect();
                if !header.is_empty() {
                    return Err(header.error("expected `)` after the input shape"));
                }
                let content;
                braced!(content in input);
                let body: TokenStream = content.parse()?;
                items.push(Item::Model(ModelDef {
                    attrs,
                    vis,
                    name,
                    input: dims,
                    input_tokens,
                    body: syn::parse2(body),
                }));
            }
        }
        Ok(Invocation { items })
    }
}

impl Parse for Seq {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let entries = Punctuated::<Entry, Token![,]>::parse_terminated(input)?.into_iter().collect();
        Ok(Seq { entries })
    }
}

/// The tokens between two cursors of the same buffer.
fn tokens_between(begin: syn::buffer::Cursor, end: syn::buffer::Cursor) -> TokenStream {
    let mut out = TokenStream::new();
    let mut c = begin;
    while c < end {
        match c.token_tree() {
            Some((tt, next)) => {
                out.extend([tt]);
                c = next;
            }
            None => break,
        }
    }
    out
}

impl Parse for Entry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let begin = input.cursor();
        let name = if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            let name: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            Some(name)
        } else {
            None
        };
        let elem = input.parse()?;
        let repeat = if input.peek(Token![*]) {
            input.parse::<Token![*]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        let tokens = tokens_between(begin, input.cursor());
        Ok(Entry { name, elem, repeat, tokens })
    }
}

impl Parse for Elem {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(token::Brace) {
            let content;
            braced!(content in input);
            return Ok(Elem::Seq(content.parse()?));
        }
        if input.peek(kw::residual) && input.peek2(token::Brace) {
            input.parse::<kw::residual>()?;
            let content;
            braced!(content in input);
            let main = content.parse()?;
            let shortcut = if input.peek(kw::shortcut) {
                input.parse::<kw::shortcut>()?;
                let cond = if input.peek(Token![if]) {
                    input.parse::<Token![if]>()?;
                    Some(Expr::parse_without_eager_brace(input)?)
                } else {
                    None
                };
                let content;
                braced!(content in input);
                Some((cond, content.parse()?))
            } else {
                None
            };
            let post = if input.peek(kw::then) {
                input.parse::<kw::then>()?;
                let content;
                braced!(content in input);
                Some(content.parse()?)
            } else {
                None
            };
            return Ok(Elem::Residual { main, shortcut, post });
        }
        let ident: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a layer (`Conv2d(..)`, `Relu`, …), a block call, `{ … }` or `residual { … }`",
            )
        })?;
        let args = if input.peek(token::Paren) { Some(input.parse()?) } else { None };
        Ok(Elem::Call { ident, args })
    }
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let tokens: TokenStream = input.fork().parse::<proc_macro2::TokenTree>()?.into();
        let content;
        parenthesized!(content in input);
        let mut positional = Vec::new();
        let mut named = Vec::new();
        while !content.is_empty() {
            if content.peek(Ident)
                && content.peek2(Token![=])
                && !content.peek2(Token![==])
                && !content.peek2(Token![=>])
            {
                let name: Ident = content.parse()?;
                content.parse::<Token![=]>()?;
                named.push((name, content.parse()?));
            } else {
                if !named.is_empty() {
                    return Err(content.error("positional arguments must come before named ones"));
                }
                positional.push(content.parse()?);
                if content.peek(Token![=>]) {
                    content.parse::<Token![=>]>()?;
                    positional.push(content.parse()?);
                }
            }
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        Ok(Args { positional, named, tokens })
    }
}
