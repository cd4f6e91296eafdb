//! Primality by trial division: the CPU-bound work of the `primes` and `compare` examples.

/// True if `n` is prime, by trial division with 2 and the odd numbers up to its square root.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}
