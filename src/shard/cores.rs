//! Which CPUs the shards run on: `--cores` as given, or every CPU this process may use less those
//! that `sluice tune` gave to NIC interrupts.

/// Parses `--cores`: a count (`4`: the first four available CPUs) or a list (`0,2,4-7`).
pub fn parse_cores(text: &str, available: &[usize]) -> Result<Vec<usize>, String> {
    let text = text.trim();
    if !text.contains(',') && !text.contains('-') {
        let count: usize = text
            .parse()
            .map_err(|_| format!("--cores `{text}`: expected a count or a list like 0,2,4-7"))?;
        if count == 0 || count > available.len() {
            return Err(format!(
                "--cores {count}: between 1 and the {} available CPUs",
                available.len()
            ));
        }
        return Ok(available[..count].to_vec());
    }
    let mut cores = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| format!("--cores `{text}`: `{part}` is not a CPU or a range"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("--cores `{text}`: `{part}` runs backwards"));
        }
        for cpu in first..=last {
            if !available.contains(&cpu) {
                return Err(format!(
                    "--cores `{text}`: CPU {cpu} is not available to this process"
                ));
            }
            if !cores.contains(&cpu) {
                cores.push(cpu);
            }
        }
    }
    Ok(cores)
}

/// The CPUs of `available` that are not `busy`, unless that would leave none or change nothing.
pub fn avoiding(available: &[usize], busy: &[u32]) -> Option<Vec<usize>> {
    let rest: Vec<usize> = available
        .iter()
        .copied()
        .filter(|&cpu| !busy.contains(&(cpu as u32)))
        .collect();
    (!rest.is_empty() && rest.len() < available.len()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_lists() {
        let available = [0, 1, 2, 3, 4, 5, 6, 7];
        assert_eq!(parse_cores("2", &available).unwrap(), vec![0, 1]);
        assert_eq!(
            parse_cores("0,2,4-6", &available).unwrap(),
            vec![0, 2, 4, 5, 6]
        );
        assert!(parse_cores("0", &available).is_err());
        assert!(parse_cores("9", &available).is_err());
        assert!(parse_cores("3-1", &available).is_err());
        assert!(parse_cores("8-9", &available).is_err());
        assert!(parse_cores("x", &available).is_err());
    }

    #[test]
    fn avoids_busy_cpus_unless_none_would_be_left() {
        assert_eq!(avoiding(&[0, 1, 2, 3], &[1, 3]), Some(vec![0, 2]));
        assert_eq!(avoiding(&[0, 1], &[0, 1]), None);
        assert_eq!(avoiding(&[0, 1], &[5]), None);
    }
}
