package zchange

import "testing"

// BenchmarkCompress measures compressing and decompressing one chart
// change, as a store does on each write and read.
func BenchmarkCompress(b *testing.B) {
	raws := chartChanges(b, 20, 11)
	b.Run("compress", func(b *testing.B) {
		n := 0
		for i := 0; i < b.N; i++ {
			r := raws[i%len(raws)]
			n += len(r)
			Compress(r)
		}
		b.SetBytes(int64(n / b.N))
	})
	b.Run("decompress", func(b *testing.B) {
		zs := make([][]byte, len(raws))
		for i, r := range raws {
			zs[i] = Compress(r)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := Decompress(zs[i%len(zs)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
