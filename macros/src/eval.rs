//! Compile-time evaluation of argument expressions: integer, float and boolean literals, block parameters,
//! arithmetic, comparisons, `&&`/`||`/`!` and pairs `(h, w)`.

use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::{BinOp, Expr, Lit, UnOp};

/// A value an argument expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A tuple such as `(3, 1)`.
    Tuple(Vec<Value>),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Tuple(v) => {
                write!(f, "(")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Names in scope: the parameters of the block being expanded.
pub type Env = HashMap<String, Value>;

fn err<T>(e: &Expr, msg: impl std::fmt::Display) -> syn::Result<T> {
    Err(syn::Error::new_spanned(e, msg))
}

/// Evaluates `e` in `env`.
pub fn eval(e: &Expr, env: &Env) -> syn::Result<Value> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => Ok(Value::Int(i.base10_parse()?)),
            Lit::Float(x) => Ok(Value::Float(x.base10_parse()?)),
            Lit::Bool(b) => Ok(Value::Bool(b.value)),
            _ => err(e, "expected an integer, float or boolean"),
        },
        Expr::Path(p) => match p.path.get_ident() {
            Some(id) => match env.get(&id.to_string()) {
                Some(v) => Ok(v.clone()),
                None if env.is_empty() => err(e, format!("unknown name `{id}`: only block parameters can be named")),
                None => {
                    let mut names: Vec<_> = env.keys().map(String::as_str).collect();
                    names.sort_unstable();
                    err(e, format!("unknown name `{id}`; the block's parameters are {}", names.join(", ")))
                }
            },
            None => err(e, "expected a literal or a block parameter"),
        },
        Expr::Paren(p) => eval(&p.expr, env),
        Expr::Group(g) => eval(&g.expr, env),
        Expr::Tuple(t) => Ok(Value::Tuple(t.elems.iter().map(|x| eval(x, env)).collect::<syn::Result<_>>()?)),
        Expr::Unary(u) => {
            let v = eval(&u.expr, env)?;
            match (&u.op, v) {
                (UnOp::Neg(_), Value::Int(i)) => Ok(Value::Int(-i)),
                (UnOp::Neg(_), Value::Float(x)) => Ok(Value::Float(-x)),
                (UnOp::Not(_), Value::Bool(b)) => Ok(Value::Bool(!b)),
                (_, v) => err(e, format!("operator `{}` cannot apply to {v}", quote::quote!(#u).to_string().trim())),
            }
        }
        Expr::Binary(b) => binary(e, &b.op, eval(&b.left, env)?, eval(&b.right, env)?),
        _ => err(e, "unsupported expression: use literals, block parameters, + - * / %, comparisons, && || !"),
    }
}

fn binary(e: &Expr, op: &BinOp, l: Value, r: Value) -> syn::Result<Value> {
    use Value::*;
    let overflow = || syn::Error::new(e.span(), "integer overflow or division by zero");
    Ok(match (op, l, r) {
        (BinOp::Add(_), Int(a), Int(b)) => Int(a.checked_add(b).ok_or_else(overflow)?),
        (BinOp::Sub(_), Int(a), Int(b)) => Int(a.checked_sub(b).ok_or_else(overflow)?),
        (BinOp::Mul(_), Int(a), Int(b)) => Int(a.checked_mul(b).ok_or_else(overflow)?),
        (BinOp::Div(_), Int(a), Int(b)) => Int(a.checked_div(b).ok_or_else(overflow)?),
        (BinOp::Rem(_), Int(a), Int(b)) => Int(a.checked_rem(b).ok_or_else(overflow)?),
        (BinOp::Add(_), Float(a), Float(b)) => Float(a + b),
        (BinOp::Sub(_), Float(a), Float(b)) => Float(a - b),
        (BinOp::Mul(_), Float(a), Float(b)) => Float(a * b),
        (BinOp::Div(_), Float(a), Float(b)) => Float(a / b),
        (BinOp::Eq(_), a, b) => Bool(a == b),
        (BinOp::Ne(_), a, b) => Bool(a != b),
        (BinOp::Lt(_), Int(a), Int(b)) => Bool(a < b),
        (BinOp::Le(_), Int(a), Int(b)) => Bool(a <= b),
        (BinOp::Gt(_), Int(a), Int(b)) => Bool(a > b),
        (BinOp::Ge(_), Int(a), Int(b)) => Bool(a >= b),
        (BinOp::And(_), Bool(a), Bool(b)) => Bool(a && b),
        (BinOp::Or(_), Bool(a), Bool(b)) => Bool(a || b),
        (_, a, b) => return err(e, format!("unsupported operation on {a} and {b}")),
    })
}
