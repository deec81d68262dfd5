/// `sort.Sort` exactly as Go 1.19 runs it (pattern-defeating quicksort), the sort the
/// etcd 3.4.23 binary was built with. It is not stable: for keys that compare equal
/// (same version, same create revision, ...) the order etcd returns is whatever this
/// algorithm leaves, so swetcd runs the same algorithm, step for step, to return
/// ties in the same order. Go source: src/sort/zsortinterface.go, sort.go.
struct GoSort<Element> {
    var data: [Element]
    let lessThan: (Element, Element) -> Bool

    /// Sorts `data` as Go's `sort.Sort(sorter)` does with `sorter.Less(i, j) == lessThan(data[i], data[j])`.
    static func sort(_ data: inout [Element], by lessThan: @escaping (Element, Element) -> Bool) {
        var s = GoSort(data: data, lessThan: lessThan)
        data = []
        s.run()
        data = s.data
    }

    @inline(__always) private func less(_ i: Int, _ j: Int) -> Bool {
        lessThan(data[i], data[j])
    }

    @inline(__always) private mutating func swap(_ i: Int, _ j: Int) {
        data.swapAt(i, j)
    }

    private static func bitsLen(_ x: Int) -> Int {
        UInt.bitWidth - UInt(bitPattern: x).leadingZeroBitCount
    }

    private mutating func run() {
        let n = data.count
        if n <= 1 { return }
        pdqsort(0, n, GoSort.bitsLen(n))
    }

    private enum Hint { case unknown, increasing, decreasing }

    private mutating func insertionSort(_ a: Int, _ b: Int) {
        var i = a + 1
        while i < b {
            var j = i
            while j > a && less(j, j - 1) {
                swap(j, j - 1)
                j -= 1
            }
            i += 1
        }
    }

    private mutating func siftDown(_ lo: Int, _ hi: Int, _ first: Int) {
        var root = lo
        while true {
            var child = 2 * root + 1
            if child >= hi { return }
            if child + 1 < hi && less(first + child, first + child + 1) {
                child += 1
            }
            if !less(first + root, first + child) { return }
            swap(first + root, first + child)
            root = child
        }
    }

    private mutating func heapSort(_ a: Int, _ b: Int) {
        let first = a, lo = 0, hi = b - a
        var i = (hi - 1) / 2
        while i >= 0 {
            siftDown(i, hi, first)
            i -= 1
        }
        i = hi - 1
        while i >= 0 {
            swap(first, first + i)
            siftDown(lo, i, first)
            i -= 1
        }
    }

    private mutating func pdqsort(_ a0: Int, _ b0: Int, _ limit0: Int) {
        let maxInsertion = 12
        var a = a0, b = b0, limit = limit0
        var wasBalanced = true, wasPartitioned = true
        while true {
            let length = b - a
            if length <= maxInsertion {
                insertionSort(a, b)
                return
            }
            if limit == 0 {
                heapSort(a, b)
                return
            }
            if !wasBalanced {
                breakPatterns(a, b)
                limit -= 1
            }
            var (pivot, hint) = choosePivot(a, b)
            if hint == .decreasing {
                reverseRange(a, b)
                pivot = (b - 1) - (pivot - a)
                hint = .increasing
            }
            if wasBalanced && wasPartitioned && hint == .increasing {
                if partialInsertionSort(a, b) { return }
            }
            if a > 0 && !less(a - 1, pivot) {
                a = partitionEqual(a, b, pivot)
                continue
            }
            let (mid, alreadyPartitioned) = partition(a, b, pivot)
            wasPartitioned = alreadyPartitioned
            let leftLen = mid - a, rightLen = b - mid
            let balanceThreshold = length / 8
            if leftLen < rightLen {
                wasBalanced = leftLen >= balanceThreshold
                pdqsort(a, mid, limit)
                a = mid + 1
            } else {
                wasBalanced = rightLen >= balanceThreshold
                pdqsort(mid + 1, b, limit)
                b = mid
            }
        }
    }

    private mutating func partition(_ a: Int, _ b: Int, _ pivot: Int) -> (Int, Bool) {
        swap(a, pivot)
        var i = a + 1, j = b - 1
        while i <= j && less(i, a) { i += 1 }
        while i <= j && !less(j, a) { j -= 1 }
        if i > j {
            swap(j, a)
            return (j, true)
        }
        swap(i, j)
        i += 1
        j -= 1
        while true {
            while i <= j && less(i, a) { i += 1 }
            while i <= j && !less(j, a) { j -= 1 }
            if i > j { break }
            swap(i, j)
            i += 1
            j -= 1
        }
        swap(j, a)
        return (j, false)
    }

    private mutating func partitionEqual(_ a: Int, _ b: Int, _ pivot: Int) -> Int {
        swap(a, pivot)
        var i = a + 1, j = b - 1
        while true {
            while i <= j && !less(a, i) { i += 1 }
            while i <= j && less(a, j) { j -= 1 }
            if i > j { break }
            swap(i, j)
            i += 1
            j -= 1
        }
        return i
    }

    private mutating func partialInsertionSort(_ a: Int, _ b: Int) -> Bool {
        let maxSteps = 5, shortestShifting = 50
        var i = a + 1
        for _ in 0..<maxSteps {
            while i < b && !less(i, i - 1) { i += 1 }
            if i == b { return true }
            if b - a < shortestShifting { return false }
            swap(i, i - 1)
            if i - a >= 2 {
                var j = i - 1
                while j >= 1 {
                    if !less(j, j - 1) { break }
                    swap(j, j - 1)
                    j -= 1
                }
            }
            if b - i >= 2 {
                var j = i + 1
                while j < b {
                    if !less(j, j - 1) { break }
                    swap(j, j - 1)
                    j += 1
                }
            }
        }
        return false
    }

    private mutating func breakPatterns(_ a: Int, _ b: Int) {
        let length = b - a
        if length >= 8 {
            var random = UInt64(length)  // Go: xorshift(length)
            let modulus = UInt(1) << UInt(GoSort.bitsLen(length))
            var idx = a + (length / 4) * 2 - 1
            while idx <= a + (length / 4) * 2 + 1 {
                random ^= random << 13
                random ^= random >> 17
                random ^= random << 5
                var other = Int(UInt(random) & (modulus - 1))
                if other >= length { other -= length }
                swap(idx, a + other)
                idx += 1
            }
        }
    }

    private func choosePivot(_ a: Int, _ b: Int) -> (Int, Hint) {
        let shortestNinther = 50, maxSwaps = 4 * 3
        let l = b - a
        var swaps = 0
        var i = a + l / 4 * 1
        var j = a + l / 4 * 2
        var k = a + l / 4 * 3
        if l >= 8 {
            if l >= shortestNinther {
                i = medianAdjacent(i, &swaps)
                j = medianAdjacent(j, &swaps)
                k = medianAdjacent(k, &swaps)
            }
            j = median(i, j, k, &swaps)
        }
        switch swaps {
        case 0: return (j, .increasing)
        case maxSwaps: return (j, .decreasing)
        default: return (j, .unknown)
        }
    }

    private func order2(_ a: Int, _ b: Int, _ swaps: inout Int) -> (Int, Int) {
        if less(b, a) {
            swaps += 1
            return (b, a)
        }
        return (a, b)
    }

    private func median(_ a0: Int, _ b0: Int, _ c0: Int, _ swaps: inout Int) -> Int {
        var a = a0, b = b0, c = c0
        (a, b) = order2(a, b, &swaps)
        (b, c) = order2(b, c, &swaps)
        (a, b) = order2(a, b, &swaps)
        _ = a
        _ = c
        return b
    }

    private func medianAdjacent(_ a: Int, _ swaps: inout Int) -> Int {
        median(a - 1, a, a + 1, &swaps)
    }

    private mutating func reverseRange(_ a: Int, _ b: Int) {
        var i = a, j = b - 1
        while i < j {
            swap(i, j)
            i += 1
            j -= 1
        }
    }
}
