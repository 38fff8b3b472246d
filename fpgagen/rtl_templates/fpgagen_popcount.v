// Number of set bits of x. One $countones: Verilator simulates it as one word-level
// operation (a bit-level adder tree of a wide XNOR-popcount unit made C++ that took
// many minutes to compile), and Yosys builds the adder tree itself.
module fpgagen_popcount #(
    parameter N = 1,  // input bits
    parameter W = 1   // output bits: enough for N
) (
    input  wire [N-1:0] x,
    output wire [W-1:0] y
);
  assign y = $countones(x);
endmodule
